// Package store holds what the message stores share: the partition and entry
// model, the errors callers act on, and the sentinel values of the data model
// (docs/design.md, "Data model"). The stores themselves live in memstore and
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
	// CloseStream, when set, makes the entry a close signal for the stream
	// with that connection id: it carries no message and is never delivered.
	// It lives in the partition the stream reads anyway, so a stream on
	// another instance notices it without a read of its own.
	CloseStream string
	Message     message.Message
}

// Head is a partition's sequence counter: the last number taken, and when.
type Head struct {
	Seq     uint64
	TakenAt time.Time // zero when no number was ever taken
	// Floor is settled history: no writer can still write a number at or
	// below it, so a reader never waits for one. Stores raise it when a
	// partition was quiet for StaleAge (DynamoDB) or purged (memory).
	Floor uint64
}

// Options configure a store. The zero value is usable.
type Options struct {
	TTL         time.Duration    // message retention; default DefaultTTL
	Now         func() time.Time // clock; default time.Now
	BeforeWrite AppendHook       // test seam between taking a number and writing
}

// DefaultTTL is the retention of a store whose Options leave it zero, and
// the default of config's MESSAGE_TTL, which the service always passes.
const DefaultTTL = 24 * time.Hour

// WithDefaults fills the zero fields.
func (o Options) WithDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Writers and readers agree on these bounds; they are what makes a missing
// number safe to give up on.
const (
	// MaxWriteTime bounds how long a writer stays between creating a message
	// and the last store request that could write it: ingest gives its
	// store work this long, and a store settles an unknown outcome within
	// it too (see ErrUnknownOutcome).
	MaxWriteTime = 10 * time.Second
	// StaleAge is longer than any writer stays in flight, with room for
	// clock skew between instances and DynamoDB's own request timeout: a
	// number taken this long ago can no longer be written, and a missing
	// number below an entry this old is closed without waiting.
	StaleAge = 3 * MaxWriteTime
	// MinTTL is the shortest retention the hole logic works with: an entry
	// must outlive StaleAge, or a reader could find neither the entry nor a
	// stale neighbour and wait on numbers nobody will write.
	MinTTL = 2 * StaleAge
)

// AppendResult is what an append produced, or what the first append with the
// same idempotency key produced.
type AppendResult struct {
	Message message.Message
	Seq     uint64
	// Replayed is true when the idempotency key had been used before and
	// nothing new was stored.
	Replayed bool
}

// Lease says that one stream is open, until ExpiresAt unless renewed. A
// lease counts towards its source IP and its session when those are set.
type Lease struct {
	ID        string
	SourceIP  string // "" when no per-source cap needs it
	SessionID string // "" for a broadcast-only stream
	ExpiresAt time.Time
}

// ConnectionIDLength is the length of a stream's connection id: 24
// lowercase hex characters (96 random bits), the lease's ID.
const ConnectionIDLength = 24

// ValidConnectionID reports whether id has the form of a connection id.
func ValidConnectionID(id string) bool {
	if len(id) != ConnectionIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// LeaseScope picks the leases CountLeasesOf counts: those of one source IP,
// or of one session. Exactly one field is set.
type LeaseScope struct {
	SourceIP  string
	SessionID string
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

	// ErrUnknownOutcome is returned by an append that sent its write but
	// could not learn whether it was applied, nor close its own number to
	// make sure it was not (the store stayed unreachable). The message may
	// be delivered; a retry with the same idempotency key is safe.
	ErrUnknownOutcome = errors.New("the store did not confirm the write; it may have been stored")
)

// ErrThrottled marks, besides ErrUnavailable, a fault that was the backing
// service refusing for load (DynamoDB throttling): the operator's alarm,
// not a bug nor an outage.
var ErrThrottled = errors.New("store throttled")

// Throttled wraps err so that errors.Is holds for both ErrThrottled and
// ErrUnavailable.
func Throttled(err error) error {
	if err == nil || errors.Is(err, ErrThrottled) {
		return err
	}
	return &unavailableError{&throttledError{err}}
}

type throttledError struct{ err error }

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() []error {
	return []error{e.err, ErrThrottled}
}

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
