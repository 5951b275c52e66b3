// Package cursor holds the SSE resume cursor "<epoch>.<sessionSeq>.<broadcastSeq>":
// the store's epoch and the last sequence number a stream has passed in each
// partition it follows (DESIGN.md section 3).
package cursor

import (
	"errors"
	"strconv"
	"strings"
)

// Cursor is a stream position. Session is 0 for a stream without a session.
type Cursor struct {
	Epoch     int64
	Session   uint64
	Broadcast uint64
}

// String formats the cursor as sent in an SSE id: line.
func (c Cursor) String() string {
	b := make([]byte, 0, 48)
	return string(c.Append(b))
}

// Append appends the formatted cursor to b.
func (c Cursor) Append(b []byte) []byte {
	b = strconv.AppendInt(b, c.Epoch, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, c.Session, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, c.Broadcast, 10)
}

// ErrMalformed is returned for anything that is not a cursor.
var ErrMalformed = errors.New("malformed cursor")

// Parse reads a cursor. Only plain decimal digits are accepted: no signs,
// spaces or empty parts.
func Parse(s string) (Cursor, error) {
	if len(s) > 64 {
		return Cursor{}, ErrMalformed
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Cursor{}, ErrMalformed
	}
	var nums [3]uint64
	for i, p := range parts {
		if p == "" || len(p) > 20 {
			return Cursor{}, ErrMalformed
		}
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return Cursor{}, ErrMalformed
			}
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Cursor{}, ErrMalformed
		}
		nums[i] = n
	}
	if nums[0] > 1<<63-1 {
		return Cursor{}, ErrMalformed
	}
	return Cursor{Epoch: int64(nums[0]), Session: nums[1], Broadcast: nums[2]}, nil
}
