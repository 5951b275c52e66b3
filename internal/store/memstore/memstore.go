// Package memstore is the embedded, in-memory message store: the default for
// local runs and the reference the DynamoDB store is held to. It wakes
// waiting readers the moment a message is appended.
package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	TTL         time.Duration    // message retention; default 24h
	Now         func() time.Time // clock; default time.Now
	BeforeWrite store.AppendHook // test seam between taking a number and writing
}

// Store keeps everything in process memory. It is safe for concurrent use.
type Store struct {
	ttl         time.Duration
	now         func() time.Time
	beforeWrite store.AppendHook
	epoch       int64

	mu         sync.RWMutex // readers (streams) far outnumber writers
	partitions map[string]*partition
	idem       map[string]idemRecord
	counters   map[string]counter
	nextPurge  time.Time // of expired counters
	leases     map[string]time.Time
}

type partition struct {
	head    uint64
	takenAt time.Time
	base    uint64  // slots <= base have been purged after expiry
	slots   []*slot // slots[i] is sequence number base+1+i; nil while in flight
	changed chan struct{}
}

type slot struct {
	entry     store.Entry
	expiresAt time.Time
}

type idemRecord struct {
	result    store.AppendResult
	expiresAt time.Time
}

type counter struct {
	n         int64
	expiresAt time.Time
}

// New returns an empty store whose epoch is its start time.
func New(opts Options) *Store {
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{
		ttl:         opts.TTL,
		now:         opts.Now,
		beforeWrite: opts.BeforeWrite,
		epoch:       time.Now().UnixMilli(),
		partitions:  make(map[string]*partition),
		idem:        make(map[string]idemRecord),
		counters:    make(map[string]counter),
		leases:      make(map[string]time.Time),
	}
}

// Epoch identifies this store's numbering: a restart starts a new one, so
// cursors from before it are recognised as foreign.
func (s *Store) Epoch(ctx context.Context) (int64, error) { return s.epoch, ctx.Err() }

// Ping always succeeds: the store is in process.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

func (s *Store) part(name string) *partition {
	p := s.partitions[name]
	if p == nil {
		p = &partition{changed: make(chan struct{})}
		s.partitions[name] = p
	}
	return p
}

// Append stores msg in its partition under the next sequence number. With an
// idempotency key that was used before, it returns the first result and
// stores nothing.
func (s *Store) Append(ctx context.Context, msg message.Message, idemKey string) (store.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return store.AppendResult{}, err
	}
	name := store.Partition(msg.SessionID)

	s.mu.Lock()
	if r, ok := s.lookupIdem(idemKey); ok {
		s.mu.Unlock()
		return r, nil
	}
	p := s.part(name)
	now := s.now()
	p.head++
	seq := p.head
	p.takenAt = now
	s.mu.Unlock()

	if s.beforeWrite != nil {
		s.beforeWrite(name, seq)
	}
	if err := ctx.Err(); err != nil {
		// Like a request that never reached the database: the number stays
		// a hole until a reader closes it.
		return store.AppendResult{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	p = s.part(name)
	if sl := p.get(seq); sl != nil || seq <= p.base {
		// A reader closed our number: nothing is stored, the sender retries.
		return store.AppendResult{}, store.ErrHoleClosed
	}
	if r, ok := s.lookupIdem(idemKey); ok {
		// A concurrent retry with the same key won; close our number at once
		// so readers need not wait for it.
		p.put(seq, &slot{entry: tombstone(seq, s.now()), expiresAt: s.now().Add(s.ttl)})
		s.wake(p)
		return r, nil
	}
	res := store.AppendResult{Message: msg, Seq: seq}
	p.put(seq, &slot{entry: store.Entry{Seq: seq, Message: msg}, expiresAt: s.now().Add(s.ttl)})
	if idemKey != "" {
		s.idem[idemKey] = idemRecord{result: store.AppendResult{Message: msg, Seq: seq, Replayed: true}, expiresAt: s.now().Add(max(s.ttl, store.IdempotencyRetention))}
	}
	s.purge(p)
	s.wake(p)
	return res, nil
}

func (s *Store) lookupIdem(key string) (store.AppendResult, bool) {
	if key == "" {
		return store.AppendResult{}, false
	}
	r, ok := s.idem[key]
	if !ok {
		return store.AppendResult{}, false
	}
	if !s.now().Before(r.expiresAt) {
		delete(s.idem, key)
		return store.AppendResult{}, false
	}
	return r.result, true
}

func (p *partition) get(seq uint64) *slot {
	if seq <= p.base || seq > p.base+uint64(len(p.slots)) {
		return nil
	}
	return p.slots[seq-p.base-1]
}

func (p *partition) put(seq uint64, sl *slot) {
	for seq > p.base+uint64(len(p.slots)) {
		p.slots = append(p.slots, nil)
	}
	p.slots[seq-p.base-1] = sl
}

// purge drops expired slots from the front, as DynamoDB's TTL would.
func (s *Store) purge(p *partition) {
	now := s.now()
	n := 0
	for n < len(p.slots) && p.slots[n] != nil && !now.Before(p.slots[n].expiresAt) {
		n++
	}
	if n > 0 {
		clear(p.slots[:n])
		p.slots = p.slots[n:]
		p.base += uint64(n)
	}
}

func (s *Store) wake(p *partition) {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next write to partition.
// Take it before reading, so that no write can slip between read and wait.
func (s *Store) Changed(partition string) <-chan struct{} {
	s.mu.RLock()
	if p := s.partitions[partition]; p != nil {
		defer s.mu.RUnlock()
		return p.changed
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part(partition).changed
}

// Head returns partition's sequence counter.
func (s *Store) Head(ctx context.Context, partition string) (store.Head, error) {
	if err := ctx.Err(); err != nil {
		return store.Head{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.partitions[partition]
	if p == nil {
		return store.Head{}, nil
	}
	return store.Head{Seq: p.head, TakenAt: p.takenAt}, nil
}

// Read returns up to limit written entries of partition with sequence numbers
// above after, in order. Slots still in flight are absent: those are holes.
func (s *Store) Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.partitions[partition]
	if p == nil {
		return nil, nil
	}
	now := s.now()
	start := max(after, p.base) - p.base
	if start >= uint64(len(p.slots)) {
		return nil, nil
	}
	out := make([]store.Entry, 0, min(uint64(limit), uint64(len(p.slots))-start))
	for i := start; i < uint64(len(p.slots)) && len(out) < limit; i++ {
		sl := p.slots[i]
		if sl == nil {
			continue
		}
		e := sl.entry
		e.Expired = !now.Before(sl.expiresAt)
		out = append(out, e)
	}
	return out, nil
}

// Tombstone closes slot seq unless it was written; it returns what the slot
// holds afterwards.
func (s *Store) Tombstone(ctx context.Context, partition string, seq uint64) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.part(partition)
	now := s.now()
	if seq <= p.base {
		return store.Entry{Seq: seq, Tombstone: true, Expired: true}, nil
	}
	if sl := p.get(seq); sl != nil {
		e := sl.entry
		e.Expired = !now.Before(sl.expiresAt)
		return e, nil
	}
	e := tombstone(seq, now)
	p.put(seq, &slot{entry: e, expiresAt: now.Add(s.ttl)})
	s.wake(p)
	return e, nil
}

// IncrementCounter adds one to the counter key and returns the new count.
// A counter lives until expiresAt; rate limiters put the window in the key.
func (s *Store) IncrementCounter(ctx context.Context, key string, expiresAt time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !now.Before(s.nextPurge) {
		// Expired counters go at most once a minute, not on every request.
		for k, v := range s.counters {
			if !now.Before(v.expiresAt) {
				delete(s.counters, k)
			}
		}
		s.nextPurge = now.Add(time.Minute)
	}
	c, ok := s.counters[key]
	if !ok || !now.Before(c.expiresAt) {
		c = counter{expiresAt: expiresAt}
	}
	c.n++
	s.counters[key] = c
	return c.n, nil
}

// PutLease creates or renews connection lease id until expiresAt.
func (s *Store) PutLease(ctx context.Context, id string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases[id] = expiresAt
	return nil
}

// DeleteLease releases lease id.
func (s *Store) DeleteLease(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.leases, id)
	return nil
}

// CountLeases counts unexpired leases.
func (s *Store) CountLeases(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for id, exp := range s.leases {
		if now.Before(exp) {
			n++
		} else {
			delete(s.leases, id)
		}
	}
	return n, nil
}

// tombstone is the entry that closes slot seq; its timestamp says when.
func tombstone(seq uint64, now time.Time) store.Entry {
	return store.Entry{Seq: seq, Tombstone: true, Message: message.Message{Timestamp: now.UnixMilli()}}
}
