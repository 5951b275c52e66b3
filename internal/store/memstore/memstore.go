// Package memstore is the embedded, in-memory message store: the default for
// local runs and the reference the DynamoDB store is held to. It wakes
// waiting readers the moment a message is appended, and sweeps what expired
// so that memory follows what is retained, not what was ever sent.
package memstore

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

// Readers rely on the instant wake-up: without it they would poll.
var _ tail.Notifier = (*Store)(nil)

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
	leases     map[string]store.Lease
	scoped     map[store.LeaseScope]map[string]struct{} // lease ids by source IP and by session
	nextSweep  time.Time
	closed     chan struct{} // already closed: the answer for a settled slot
	// minBase is the highest head of any partition the sweeper dropped:
	// a partition made again starts above it, so a number is never reused
	// for another message while a reader may hold a cursor past it.
	minBase uint64
}

type partition struct {
	head    uint64
	takenAt time.Time
	base    uint64  // slots <= base are settled history: purged, or from before this partition existed
	purged  bool    // base was raised by expiry (history was lost), not at creation
	slots   []*slot // slots[i] is sequence number base+1+i; nil while in flight
	changed chan struct{}
	watched atomic.Bool              // changed was handed to a reader since the last wake
	filled  map[uint64]chan struct{} // readers waiting on a hole, by number
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
func New(opts store.Options) *Store {
	opts = opts.WithDefaults()
	return &Store{
		ttl:         opts.TTL,
		now:         opts.Now,
		beforeWrite: opts.BeforeWrite,
		epoch:       time.Now().UnixMilli(),
		partitions:  make(map[string]*partition),
		idem:        make(map[string]idemRecord),
		counters:    make(map[string]counter),
		leases:      make(map[string]store.Lease),
		scoped:      make(map[store.LeaseScope]map[string]struct{}),
		closed:      closedChan(),
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Epoch identifies this store's numbering: a restart starts a new one, so
// cursors from before it are recognised as foreign.
func (s *Store) Epoch(ctx context.Context) (int64, error) { return s.epoch, ctx.Err() }

// Ping always succeeds: the store is in process.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// part returns partition name, creating it. Callers hold s.mu for writing.
func (s *Store) part(name string) *partition {
	p := s.partitions[name]
	if p == nil {
		p = &partition{head: s.minBase, base: s.minBase, changed: make(chan struct{})}
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
	s.maybeSweep()
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

	res, woke, err := s.put(name, seq, msg, idemKey)
	if woke {
		// Let the streams this write woke run before its writer answers
		// the sender: they would otherwise wait for this goroutine to block
		// (its reply written), which is most of a targeted delivery's
		// latency on a busy machine.
		runtime.Gosched()
	}
	return res, err
}

// put stores msg under seq, unless a reader closed seq meanwhile, and
// wakes the partition's readers; woke reports whether any were waiting.
func (s *Store) put(name string, seq uint64, msg message.Message, idemKey string) (res store.AppendResult, woke bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.part(name)
	if sl := p.get(seq); sl != nil || seq <= p.base {
		// A reader closed our number: nothing is stored, the sender retries.
		return store.AppendResult{}, false, store.ErrHoleClosed
	}
	if r, ok := s.lookupIdem(idemKey); ok {
		// A concurrent retry with the same key won; close our number at once
		// so readers need not wait for it.
		p.put(seq, &slot{entry: tombstone(seq, s.now()), expiresAt: s.now().Add(s.ttl)})
		s.wake(p)
		return r, false, nil
	}
	res = store.AppendResult{Message: msg, Seq: seq}
	p.put(seq, &slot{entry: store.Entry{Seq: seq, Message: msg}, expiresAt: s.now().Add(s.ttl)})
	if idemKey != "" {
		s.idem[idemKey] = idemRecord{result: store.AppendResult{Message: msg, Seq: seq, Replayed: true}, expiresAt: s.now().Add(max(s.ttl, store.IdempotencyRetention))}
	}
	p.purge(s.now(), s.ttl)
	return res, s.wake(p), nil
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
	if c, ok := p.filled[seq]; ok {
		close(c)
		delete(p.filled, seq)
	}
}

// release wakes every reader waiting on a hole at or below seq.
func (p *partition) release(seq uint64) {
	for n, c := range p.filled {
		if n <= seq {
			close(c)
			delete(p.filled, n)
		}
	}
}

// purge drops expired slots from the front, as DynamoDB's TTL would. An
// empty slot goes with them once a later slot expired, or once the last
// number was taken a retention ago: its writer gave up long before.
func (p *partition) purge(now time.Time, ttl time.Duration) {
	n := 0 // p.slots[:n] go
	for i, sl := range p.slots {
		if sl == nil {
			continue
		}
		if now.Before(sl.expiresAt) {
			break
		}
		n = i + 1
	}
	if n < len(p.slots) && now.Sub(p.takenAt) >= ttl && !slices.ContainsFunc(p.slots[n:], func(sl *slot) bool { return sl != nil }) {
		n = len(p.slots)
	}
	if n == 0 {
		return
	}
	clear(p.slots[:n])
	switch rest := p.slots[n:]; {
	case len(rest) == 0:
		p.slots = nil // a quiet partition keeps no array
	case cap(rest) > 2*len(rest)+64:
		p.slots = slices.Clone(rest)
	default:
		p.slots = rest
	}
	p.base += uint64(n)
	p.purged = true
	p.release(p.base)
}

// wake closes p's change channel for a new one, and reports whether a
// reader had taken the old one. Callers hold s.mu for writing.
func (s *Store) wake(p *partition) bool {
	close(p.changed)
	p.changed = make(chan struct{})
	return p.watched.Swap(false)
}

// sweepEvery paces the sweeper: often enough that memory follows the
// retention, rarely enough that its pass over every key costs nothing.
const sweepEvery = time.Minute

// maybeSweep runs Sweep when it is due. Callers hold s.mu for writing.
func (s *Store) maybeSweep() {
	now := s.now()
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(min(sweepEvery, s.ttl/2))
	s.sweep(now)
}

// Sweep forgets what expired: messages and tombstones of every partition,
// partitions left with nothing (and those only readers ever asked for),
// idempotency records, counters and leases. Appends and stream opens run it
// by themselves every minute at most.
func (s *Store) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(s.now())
}

func (s *Store) sweep(now time.Time) {
	for name, p := range s.partitions {
		p.purge(now, s.ttl)
		if len(p.slots) > 0 || (p.head > p.base && now.Sub(p.takenAt) < s.ttl) {
			continue
		}
		// Nothing retained and no writer can come back: drop it. Waiting
		// readers wake, find nothing, and ask for a fresh channel, which
		// makes the partition again above every number it ever had.
		s.minBase = max(s.minBase, p.head)
		close(p.changed)
		p.release(p.head)
		delete(s.partitions, name)
	}
	for k, r := range s.idem {
		if !now.Before(r.expiresAt) {
			delete(s.idem, k)
		}
	}
	for k, c := range s.counters {
		if !now.Before(c.expiresAt) {
			delete(s.counters, k)
		}
	}
	for id, l := range s.leases {
		if !now.Before(l.ExpiresAt) {
			s.dropLease(id)
		}
	}
}

// Changed returns a channel that is closed at the next write to partition.
// Take it before reading, so that no write can slip between read and wait.
func (s *Store) Changed(partition string) <-chan struct{} {
	s.mu.RLock()
	if p := s.partitions[partition]; p != nil {
		defer s.mu.RUnlock()
		p.watched.Store(true)
		return p.changed
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep()
	p := s.part(partition)
	p.watched.Store(true)
	return p.changed
}

// Filled returns a channel closed once slot seq of partition is written or
// tombstoned (at once when it is).
func (s *Store) Filled(partition string, seq uint64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.part(partition)
	if seq <= p.base || p.get(seq) != nil {
		return s.closed
	}
	c, ok := p.filled[seq]
	if !ok {
		if p.filled == nil {
			p.filled = make(map[uint64]chan struct{})
		}
		c = make(chan struct{})
		p.filled[seq] = c
	}
	return c
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
		return store.Head{Seq: s.minBase, Floor: s.minBase}, nil
	}
	return store.Head{Seq: p.head, TakenAt: p.takenAt, Floor: p.base}, nil
}

// floorEntry stands for the settled history below a partition's first slot.
// Its ancient timestamp tells a reader that no writer can still fill a
// number beneath it; it is flagged expired when that history was purged.
func (p *partition) floorEntry() store.Entry {
	return store.Entry{Seq: p.base, Tombstone: true, Expired: p.purged, Message: message.Message{Timestamp: 1}}
}

// Read returns up to limit entries of partition with sequence numbers above
// after, in order. Slots still in flight are absent: those are holes. A
// reader behind the partition's floor first gets an entry at the floor.
func (s *Store) Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.partitions[partition]
	if p == nil || limit <= 0 {
		return nil, nil
	}
	now := s.now()
	start := max(after, p.base) - p.base
	out := make([]store.Entry, 0, min(uint64(limit), uint64(len(p.slots))-min(start, uint64(len(p.slots)))+1))
	if after < p.base {
		out = append(out, p.floorEntry())
	}
	for i := start; i < uint64(len(p.slots)) && len(out) < limit; i++ {
		if sl := p.slots[i]; sl != nil {
			out = append(out, sl.read(now))
		}
	}
	return out, nil
}

// ReadBefore returns up to limit entries numbered below before, highest
// first; the partition's floor entry ends the history.
func (s *Store) ReadBefore(ctx context.Context, partition string, before uint64, limit int) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.partitions[partition]
	if p == nil || limit <= 0 {
		return nil, nil
	}
	now := s.now()
	var out []store.Entry
	top := min(before, p.base+uint64(len(p.slots))+1)
	for seq := top - 1; seq > p.base && len(out) < limit; seq-- {
		if sl := p.slots[seq-p.base-1]; sl != nil {
			out = append(out, sl.read(now))
		}
	}
	if len(out) < limit && p.base > 0 && p.base < before {
		out = append(out, p.floorEntry())
	}
	return out, nil
}

func (sl *slot) read(now time.Time) store.Entry {
	e := sl.entry
	e.Expired = !now.Before(sl.expiresAt)
	return e
}

// Tombstone closes slot seq unless it was written; it returns what the slot
// holds afterwards. A number at or below the floor is settled already: the
// answer is the floor entry, which lets a reader pass the whole run at once.
func (s *Store) Tombstone(ctx context.Context, partition string, seq uint64) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.part(partition)
	now := s.now()
	if seq <= p.base {
		return p.floorEntry(), nil
	}
	if sl := p.get(seq); sl != nil {
		return sl.read(now), nil
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
	s.maybeSweep()
	now := s.now()
	c, ok := s.counters[key]
	if !ok || !now.Before(c.expiresAt) {
		c = counter{expiresAt: expiresAt}
	}
	c.n++
	s.counters[key] = c
	return c.n, nil
}

// AppendClose appends a close signal for stream connectionID to partition:
// every reader of the partition passes it, and that stream ends on it.
func (s *Store) AppendClose(ctx context.Context, partition, connectionID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep()
	p := s.part(partition)
	now := s.now()
	p.head++
	p.takenAt = now
	e := store.Entry{Seq: p.head, CloseStream: connectionID, Message: message.Message{Timestamp: now.UnixMilli()}}
	p.put(p.head, &slot{entry: e, expiresAt: now.Add(s.ttl)})
	p.purge(now, s.ttl)
	s.wake(p)
	return nil
}

// leaseScopes are the scopes lease l counts towards.
func leaseScopes(l store.Lease) []store.LeaseScope {
	var scopes []store.LeaseScope
	if l.SourceIP != "" {
		scopes = append(scopes, store.LeaseScope{SourceIP: l.SourceIP})
	}
	if l.SessionID != "" {
		scopes = append(scopes, store.LeaseScope{SessionID: l.SessionID})
	}
	return scopes
}

// PutLease creates or renews a connection lease.
func (s *Store) PutLease(ctx context.Context, l store.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.leases[l.ID]; ok {
		s.unindex(old)
	}
	s.leases[l.ID] = l
	for _, sc := range leaseScopes(l) {
		ids := s.scoped[sc]
		if ids == nil {
			ids = make(map[string]struct{})
			s.scoped[sc] = ids
		}
		ids[l.ID] = struct{}{}
	}
	return nil
}

// unindex removes l from the scope index. Callers hold s.mu for writing.
func (s *Store) unindex(l store.Lease) {
	for _, sc := range leaseScopes(l) {
		if ids := s.scoped[sc]; ids != nil {
			delete(ids, l.ID)
			if len(ids) == 0 {
				delete(s.scoped, sc)
			}
		}
	}
}

// DeleteLease releases a lease.
func (s *Store) DeleteLease(ctx context.Context, l store.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLease(l.ID)
	return nil
}

func (s *Store) dropLease(id string) {
	if l, ok := s.leases[id]; ok {
		s.unindex(l)
		delete(s.leases, id)
	}
}

// LeaseOf returns the unexpired lease with connection id id.
func (s *Store) LeaseOf(ctx context.Context, id string) (store.Lease, bool, error) {
	if err := ctx.Err(); err != nil {
		return store.Lease{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[id]
	if !ok || !s.now().Before(l.ExpiresAt) {
		return store.Lease{}, false, nil
	}
	return l, true, nil
}

// CountLeases counts unexpired leases.
func (s *Store) CountLeases(ctx context.Context) (int, error) {
	return s.CountLeasesOf(ctx, store.LeaseScope{})
}

// CountLeasesOf counts the unexpired leases of one source IP or session
// (all of them for the zero scope): a scope costs what it holds, not what
// the store holds.
func (s *Store) CountLeasesOf(ctx context.Context, scope store.LeaseScope) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Counted under the read lock, which the streams share: a broadcast
	// POST counts every lease. Expired ones are dropped afterwards.
	s.mu.RLock()
	now := s.now()
	var expired []string
	n := 0
	count := func(id string, l store.Lease) {
		if now.Before(l.ExpiresAt) {
			n++
		} else {
			expired = append(expired, id)
		}
	}
	if scope == (store.LeaseScope{}) {
		for id, l := range s.leases {
			count(id, l)
		}
	} else {
		for id := range s.scoped[scope] {
			count(id, s.leases[id])
		}
	}
	s.mu.RUnlock()
	if len(expired) > 0 {
		s.mu.Lock()
		for _, id := range expired {
			if l, ok := s.leases[id]; ok && !now.Before(l.ExpiresAt) { // not renewed meanwhile
				s.dropLease(id)
			}
		}
		s.mu.Unlock()
	}
	return n, nil
}

// Stats counts what the store holds, for memory tests and measurements.
type Stats struct {
	Partitions, Slots, IdempotencyKeys, Counters, Leases int
}

// Stats reports what the store holds now.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{Partitions: len(s.partitions), IdempotencyKeys: len(s.idem), Counters: len(s.counters), Leases: len(s.leases)}
	for _, p := range s.partitions {
		st.Slots += len(p.slots)
	}
	return st
}

// tombstone is the entry that closes slot seq; its timestamp says when.
func tombstone(seq uint64, now time.Time) store.Entry {
	return store.Entry{Seq: seq, Tombstone: true, Message: message.Message{Timestamp: now.UnixMilli()}}
}
