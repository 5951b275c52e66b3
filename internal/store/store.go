// Package store holds what the message stores share: the partition and entry
// model, the errors callers act on, and the sentinel values of the data model
// (DESIGN.md section 4). The stores themselves live in memstore and
// dynamostore; their common behaviour is pinned by storetest.
package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/message"
)

// BroadcastPartition holds messages sent without a sessionId.
const BroadcastPartition = "broadcast"

const sessionPrefix = "session#"

// Partition returns the partition a message for sessionID lives in.
func Partition(sessionID string) string {
	if sessionID == "" {
		return BroadcastPartition
	}
	return sessionPrefix + sessionID
}

// Entry is one numbered slot of a partition: a message or a tombstone that
// closed a hole.
type Entry struct {
	Seq       uint64
	Tombstone bool
	// Expired is set when the entry's retention has passed but the store has
	// not deleted it yet (DynamoDB deletes late). Expired messages are never
	// delivered, but their presence tells readers the slot is settled.
	Expired bool
	Message message.Message
}

// Head is a partition's sequence counter: the last number taken, and when.
type Head struct {
	Seq     uint64
	TakenAt time.Time // zero when no number was ever taken
}

// AppendResult is what an append produced, or what the first append with the
// same idempotency key produced.
type AppendResult struct {
	Message message.Message
	Seq     uint64
	// Replayed is true when the idempotency key had been used before and
	// nothing new was stored.
	Replayed bool
}

// AppendHook, when set on a store, runs after an append took its sequence
// number and before it writes the message: a test seam for holes.
type AppendHook func(partition string, seq uint64)

var (
	// ErrUnavailable marks faults of the backing service (network, throttling
	// after retries, 5xx). Callers answer 503 and the sender retries.
	ErrUnavailable = errors.New("store unavailable")

	// ErrHoleClosed is returned by an append whose sequence number a reader
	// tombstoned because the write came too late. Nothing was stored; the
	// sender should retry.
	ErrHoleClosed = errors.New("sequence number was closed before the message was written")
)

// Unavailable wraps err so that errors.Is(err, ErrUnavailable) holds, keeping
// err's text and chain.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &unavailableError{err}
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{e.err, ErrUnavailable}
}

// IdempotencyRetention is how long an idempotency key is remembered at least.
const IdempotencyRetention = 24 * time.Hour

// MaxIdempotencyKeyLength bounds the key a sender may give.
const MaxIdempotencyKeyLength = 255

// ValidateIdempotencyKey accepts 1-255 printable ASCII characters, space
// included (0x20-0x7e): what any sender can put in a header unchanged.
func ValidateIdempotencyKey(key string) error {
	const rule = "Idempotency key (the Idempotency-Key or webhook-id header) must be 1 to %d printable ASCII characters (letters, digits, punctuation, spaces)"
	if key == "" || len(key) > MaxIdempotencyKeyLength {
		return &message.ValidationError{Reason: fmt.Sprintf(rule+"; it has %d bytes.", MaxIdempotencyKeyLength, len(key))}
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return &message.ValidationError{Reason: fmt.Sprintf(rule+"; byte %d is 0x%02x.", MaxIdempotencyKeyLength, i+1, key[i])}
		}
	}
	return nil
}
