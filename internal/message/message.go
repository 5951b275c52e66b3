// Package message holds the webhook message model: its identifiers and the
// rules a message and its target session must follow.
package message

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxSessionIDLength is the longest session id: a rule of the contract, not
// a setting (the message length limit is MAX_MESSAGE_CHARS, in
// internal/config).
const MaxSessionIDLength = 128

// Message is one webhook message as stored and delivered.
type Message struct {
	ID        string // "<13-digit ms>-<random>", the seed guide's format
	SessionID string // "" means broadcast
	Text      string // byte-exact as sent
	Timestamp int64  // milliseconds since the Unix epoch
}

// Broadcast reports whether the message targets every stream.
func (m Message) Broadcast() bool { return m.SessionID == "" }

// ValidationError is a client error whose text can be shown to the sender.
// Field names the input it is about ("message", "sessionId"), empty when it
// is about no single field; Reason then reads after the field's name ("must
// be a string."), so a caller that names the input in its own words (the
// stream's query parameter) reuses the rule without rewording it.
type ValidationError struct {
	Field  string
	Reason string
}

// QueryError words err, a validation error about a field, as one about the
// query parameter of that name: "Query parameter '<Field>' <Reason>".
func QueryError(err error) string {
	var invalid *ValidationError
	if errors.As(err, &invalid) && invalid.Field != "" {
		return "Query parameter '" + invalid.Field + "' " + invalid.Reason
	}
	return err.Error()
}

// Error is the sentence for the sender: "Field '<Field>' <Reason>", or
// Reason alone.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return "Field '" + e.Field + "' " + e.Reason
}

// IsValidation reports whether err is a ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateText checks a message body: present, valid UTF-8, not blank, and at
// most maxChars characters (runes, not bytes). The text itself is never
// altered: trimming only decides emptiness.
func ValidateText(text string, maxChars int) error {
	if !utf8.ValidString(text) {
		return invalid("message", "must be valid UTF-8.")
	}
	if strings.TrimSpace(text) == "" {
		return invalid("message", "is required and must be a non-empty string.")
	}
	if n := utf8.RuneCountInString(text); n > maxChars {
		return invalid("message", "is too long: %d characters, the limit is %d.", n, maxChars)
	}
	return nil
}

// ValidateSessionID checks a target session: 1-128 characters of
// [A-Za-z0-9._:-]. The empty string is not a session (it means broadcast and
// is handled before this check).
func ValidateSessionID(id string) error {
	if id == "" || len(id) > MaxSessionIDLength {
		return invalid("sessionId", "must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'.", MaxSessionIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !sessionIDByte(id[i]) {
			return invalid("sessionId", "must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'.", MaxSessionIDLength)
		}
	}
	return nil
}

func sessionIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == ':', c == '-':
		return true
	}
	return false
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// idRandomLen random characters give 36^12 ≈ 2^62 values per millisecond.
const idRandomLen = 12

// NewID returns a message id in the seed guide's format: the millisecond
// timestamp, a dash, and random lowercase alphanumerics.
func NewID(at time.Time) string {
	var b [13 + 1 + idRandomLen]byte
	buf := strconv.AppendInt(b[:0], at.UnixMilli(), 10)
	buf = append(buf, '-')
	var r [idRandomLen]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	for _, x := range r {
		// 252 = 7*36: reject to avoid modulo bias.
		for x >= 252 {
			var one [1]byte
			_, _ = rand.Read(one[:])
			x = one[0]
		}
		buf = append(buf, idAlphabet[x%36])
	}
	return string(buf)
}

// New builds a message stamped with now.
func New(now time.Time, sessionID, text string) Message {
	return Message{ID: NewID(now), SessionID: sessionID, Text: text, Timestamp: now.UnixMilli()}
}
