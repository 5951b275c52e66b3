// Package cursor holds the SSE resume cursor
// "<epoch>.<sessionSeq>.<broadcastSeq>.<stream>": the store's epoch, the last
// sequence number a stream has passed in each partition it follows, and a
// tag of the stream's session (docs/design.md, "Cursor").
package cursor

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// Cursor is a stream position. Session is 0 for a stream without a session.
type Cursor struct {
	Epoch     int64
	Session   uint64
	Broadcast uint64
	// Stream ties the cursor to the session it was issued for (see Tag), so
	// that a cursor from one session's stream is not resumed on another's.
	Stream uint32
}

// Tag is the Stream part for a stream of sessionID ("" for broadcast
// only): a truncated hash, so the cursor does not carry the session id in
// clear. It is no secret; it only tells streams apart.
func Tag(sessionID string) uint32 {
	sum := sha256.Sum256([]byte("webhook-relay cursor\x00" + sessionID))
	return binary.BigEndian.Uint32(sum[:4])
}

// String formats the cursor as sent in an SSE id: line.
func (c Cursor) String() string {
	b := make([]byte, 0, 56)
	return string(c.Append(b))
}

// Append appends the formatted cursor to b.
func (c Cursor) Append(b []byte) []byte {
	b = strconv.AppendInt(b, c.Epoch, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, c.Session, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, c.Broadcast, 10)
	b = append(b, '.')
	const hex = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hex[c.Stream>>shift&0xf])
	}
	return b
}

// ErrMalformed is returned for anything that is not a cursor.
var ErrMalformed = errors.New("malformed cursor")

// Parse reads a cursor. Only plain decimal digits are accepted in the
// numbers (no signs, spaces or empty parts) and eight lowercase hex digits
// in the stream tag.
func Parse(s string) (Cursor, error) {
	if len(s) > 72 {
		return Cursor{}, ErrMalformed
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 || len(parts[3]) != 8 {
		return Cursor{}, ErrMalformed
	}
	var nums [3]uint64
	for i, p := range parts[:3] {
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
	var tag uint32
	for j := 0; j < 8; j++ {
		d := parts[3][j]
		switch {
		case d >= '0' && d <= '9':
			tag = tag<<4 | uint32(d-'0')
		case d >= 'a' && d <= 'f':
			tag = tag<<4 | uint32(d-'a'+10)
		default:
			return Cursor{}, ErrMalformed
		}
	}
	return Cursor{Epoch: int64(nums[0]), Session: nums[1], Broadcast: nums[2], Stream: tag}, nil
}
