// Package storetest is the conformance suite every message store must pass:
// the same tests, run against the memory store and against DynamoDB Local,
// pin the data model and the guarantees of docs/design.md. Readers are exercised
// through tail.Follower, the reader the streams use.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

// Store is the full store contract.
type Store interface {
	tail.Store
	Append(ctx context.Context, msg message.Message, idemKey string) (store.AppendResult, error)
	IncrementCounter(ctx context.Context, key string, expiresAt time.Time) (int64, error)
	PutLease(ctx context.Context, l store.Lease) error
	DeleteLease(ctx context.Context, l store.Lease) error
	CountLeases(ctx context.Context) (int, error)
	CountLeasesOf(ctx context.Context, scope store.LeaseScope) (int, error)
	LeaseOf(ctx context.Context, id string) (store.Lease, bool, error)
	AppendClose(ctx context.Context, partition, connectionID string) error
	Ping(ctx context.Context) error
}

// Options are what a test asks of a new store.
type Options = store.Options

// Factory returns a new, empty store for one test.
type Factory func(t *testing.T, opts Options) Store

// suite is every conformance test, by name.
var suite = []struct {
	name string
	fn   func(*testing.T, Factory)
}{
	{"ConcurrentWritersAndReaders", concurrent(8, 250)},
	{"ConcurrentWritersAndReadersSmall", concurrent(4, 100)},
	{"SharedReads", testSharedReads},
	{"HoleSlowWriter", testHoleSlowWriter},
	{"HoleTooLateWriter", testHoleTooLateWriter},
	{"HoleFailedWriter", testHoleFailedWriter},
	{"FreshStreamSettlesWriterInFlight", testFreshSettles},
	{"FreshStreamSettlesDeepWriter", testFreshSettlesDeepWriter},
	{"HolePendingReadsBounded", testHolePendingReads},
	{"LargeMessagesPaged", testLargeMessagesPaged},
	{"NeverExpiresEarly", testNeverExpiresEarly},
	{"ReplayCursors", testReplayCursors},
	{"TombstoneNeverOverwrites", testTombstoneNeverOverwrites},
	{"Idempotency", testIdempotency},
	{"ExpiryAndLatest", testExpiry},
	{"Leases", testLeases},
	{"CloseSignals", testCloseSignals},
	{"Counters", testCounters},
	{"ResumeTwoPartitions", testResume},
	{"ResumeResets", testResets},
}

// UnderFaults names the tests that prove delivery guarantees with writers
// that retry like senders: they run again on a store under injected faults.
var UnderFaults = []string{
	"ConcurrentWritersAndReadersSmall", "FreshStreamSettlesDeepWriter", "Idempotency",
	"ResumeTwoPartitions", "ReplayCursors", "LargeMessagesPaged", "CloseSignals", "SharedReads",
}

// Run runs the whole suite, or the tests named.
func Run(t *testing.T, newStore Factory, names ...string) {
	ran := 0
	for _, tt := range suite {
		if len(names) > 0 && !slices.Contains(names, tt.name) {
			continue
		}
		ran++
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore)
		})
	}
	if ran == 0 || (len(names) > 0 && ran != len(names)) {
		t.Fatalf("storetest.Run: %d of the tests %q exist", ran, names)
	}
}

// Clock is a settable clock for expiry tests.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts at the real time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// appendRetry appends like a sender: it retries what was not stored (a
// closed number; the store unavailable, which under injected faults says
// the same), and fails on anything else, an unknown outcome included.
func appendRetry(ctx context.Context, s Store, m message.Message) (store.AppendResult, error) {
	return appendKeyRetry(ctx, s, m, "")
}

func appendKeyRetry(ctx context.Context, s Store, m message.Message, key string) (store.AppendResult, error) {
	for {
		r, err := s.Append(ctx, m, key)
		if !errors.Is(err, store.ErrHoleClosed) && (!errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUnknownOutcome)) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// reader collects what a follower delivers, checking order as it goes.
type reader struct {
	f       *tail.Follower
	session bool
	got     []tail.Delivery
	seen    map[string]int
}

func openReader(t *testing.T, ctx context.Context, s Store, opts tail.Options, session, last string) (*reader, []tail.Delivery, string) {
	t.Helper()
	f, replay, reset, err := tail.Open(ctx, s, opts, session, last)
	for errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // as the stream handler retries an open
		f, replay, reset, err = tail.Open(ctx, s, opts, session, last)
	}
	if err != nil {
		t.Fatalf("tail.Open(%q, %q): %v", session, last, err)
	}
	return &reader{f: f, session: session != "", seen: make(map[string]int)}, replay, reset
}

// pollUntil polls until want messages arrived (checking order and
// uniqueness as they come), or fails the test when ctx ends.
func (r *reader) pollUntil(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	if err := r.collect(ctx, want); err != nil {
		t.Fatal(err)
	}
}

// collect is pollUntil for other goroutines: it returns the failure.
func (r *reader) collect(ctx context.Context, want int) error {
	for len(r.got) < want {
		ds, err := r.f.Poll(ctx)
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("poll: %w", err)
		}
		for _, d := range ds {
			if err := r.add(d); err != nil {
				return err
			}
		}
		if len(r.got) >= want {
			break
		}
		w := r.f.Next()
		timer := time.NewTimer(w.After)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("timed out with %d of %d messages", len(r.got), want)
		case <-w.C[0]:
		case <-w.C[1]:
		case <-timer.C:
		}
		timer.Stop()
	}
	return nil
}

func (r *reader) add(d tail.Delivery) error {
	if n := r.seen[d.Message.ID]; n > 0 {
		return fmt.Errorf("message %s delivered twice", d.Message.ID)
	}
	r.seen[d.Message.ID]++
	if len(r.got) > 0 {
		prev := r.got[len(r.got)-1].Cursor
		if d.Cursor.Session < prev.Session || d.Cursor.Broadcast < prev.Broadcast {
			return fmt.Errorf("cursor went back from %v to %v", prev, d.Cursor)
		}
		// Some partition advances with every message (a tombstone skipped
		// at the end of a poll may move the other one too).
		if d.Cursor.Session == prev.Session && d.Cursor.Broadcast == prev.Broadcast {
			return fmt.Errorf("message %s: cursor %v did not advance from %v", d.Message.ID, d.Cursor, prev)
		}
	}
	r.got = append(r.got, d)
	return nil
}

func fastOpts() tail.Options {
	return tail.Options{HoleTimeout: 3 * time.Second, PollInterval: 20 * time.Millisecond, ReplayCount: 5}
}

func concurrent(writers, perWriter int) func(*testing.T, Factory) {
	return func(t *testing.T, newStore Factory) { testConcurrent(t, newStore, writers, perWriter, 1, nil) }
}

// testSharedReads: many followers per partition sharing one tail.Hub, as
// the streams of one process do, each get exactly what they follow; so does
// one that resumes, after the writers are done, from before everything.
func testSharedReads(t *testing.T, newStore Factory) {
	testConcurrent(t, newStore, 4, 60, 6, tail.NewHub())
}

func testConcurrent(t *testing.T, newStore Factory, writers, perWriter, perTarget int, hub *tail.Hub) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, 2*time.Minute)
	targets := []string{"a", "b", ""}
	opts := fastOpts()
	opts.Hub = hub

	var all []*reader
	readers := map[string][]*reader{}
	for range perTarget {
		for _, sess := range targets {
			r, replay, _ := openReader(t, ctx, s, opts, sess, "")
			if len(replay) != 0 {
				t.Fatalf("fresh store replayed %d messages", len(replay))
			}
			readers[sess] = append(readers[sess], r)
			all = append(all, r)
			t.Cleanup(r.f.Close)
		}
	}

	// Every reader knows how many messages it must see, and reads while
	// the writers write.
	count := map[string]int{}
	for w := range writers {
		for i := range perWriter {
			count[targets[(w+i)%len(targets)]]++
		}
	}
	want := map[string]int{"a": count["a"] + count[""], "b": count["b"] + count[""], "": count[""]}
	readErrs := make(chan error, len(all))
	var rg sync.WaitGroup
	for _, sess := range targets {
		for _, r := range readers[sess] {
			rg.Add(1)
			go func() {
				defer rg.Done()
				if err := r.collect(ctx, want[sess]); err != nil {
					readErrs <- fmt.Errorf("reader %q: %w", sess, err)
				}
			}()
		}
	}

	var mu sync.Mutex
	accepted := map[string][]string{} // session -> message ids
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				sess := targets[(w+i)%len(targets)]
				m := message.New(time.Now(), sess, fmt.Sprintf("w%d-%d", w, i))
				if _, err := appendRetry(ctx, s, m); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				accepted[sess] = append(accepted[sess], m.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("append: %v", err)
	}
	rg.Wait()
	close(readErrs)
	for err := range readErrs {
		t.Fatal(err)
	}
	expect := map[string]map[string]bool{}
	for _, sess := range targets {
		set := map[string]bool{}
		for _, id := range accepted[sess] {
			set[id] = true
		}
		if sess != "" {
			for _, id := range accepted[""] {
				set[id] = true
			}
		}
		expect[sess] = set
	}
	if hub != nil {
		// Late resumers from before everything: below the feeds' windows
		// or not, each catches up exactly.
		for _, sess := range targets {
			late, _, reset := openReader(t, ctx, s, opts, sess, readers[sess][0].f.Start().String())
			if reset != "" {
				t.Fatalf("late reader %q: reset %q", sess, reset)
			}
			t.Cleanup(late.f.Close)
			if err := late.collect(ctx, want[sess]); err != nil {
				t.Fatalf("late reader %q: %v", sess, err)
			}
			readers[sess] = append(readers[sess], late)
		}
	}
	for _, sess := range targets {
		for _, r := range readers[sess] {
			if len(r.got) != len(expect[sess]) {
				t.Fatalf("reader %q got %d messages, want %d", sess, len(r.got), len(expect[sess]))
			}
			for _, d := range r.got {
				if !expect[sess][d.Message.ID] {
					t.Fatalf("reader %q got message %s (session %q) it does not follow", sess, d.Message.ID, d.Message.SessionID)
				}
			}
			// Nothing more arrives.
			more, err := r.f.Poll(ctx)
			for errors.Is(err, store.ErrUnavailable) {
				more, err = r.f.Poll(ctx)
			}
			if err != nil || len(more) != 0 {
				t.Fatalf("reader %q: extra poll returned %d messages, %v", sess, len(more), err)
			}
		}
	}
	t.Logf("%d writers x %d messages over %d partitions, %d readers each: every reader saw its %d/%d/%d once, in order",
		writers, perWriter, len(targets), perTarget, len(expect["a"]), len(expect["b"]), len(expect[""]))
}

// pauser pauses the writer of one sequence number of one partition.
type pauser struct {
	partition string
	seq       uint64 // 0: the first number taken in the partition, whichever
	reached   chan struct{}
	release   chan struct{}
	onReach   func()
	fired     atomic.Bool
}

func newPauser(partition string, seq uint64) *pauser {
	return &pauser{partition: partition, seq: seq, reached: make(chan struct{}), release: make(chan struct{})}
}

func (p *pauser) hook(partition string, seq uint64) {
	if partition != p.partition || (p.seq != 0 && seq != p.seq) || !p.fired.CompareAndSwap(false, true) {
		return
	}
	close(p.reached)
	if p.onReach != nil {
		p.onReach()
	}
	<-p.release
}

// holeSetup starts a writer that takes number 1 of session "h" and pauses,
// then appends number 2, and opens a reader at the start.
func holeSetup(t *testing.T, newStore Factory, holeTimeout time.Duration, failWriter bool) (s Store, r *reader, first chan error, firstMsg, second message.Message, p *pauser) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	p = newPauser(store.Partition("h"), 1)
	s = newStore(t, Options{BeforeWrite: p.hook})
	opts := fastOpts()
	opts.HoleTimeout = holeTimeout
	r, _, _ = openReader(t, ctx, s, opts, "h", "")

	firstMsg = message.New(time.Now(), "h", "first")
	first = make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	if failWriter {
		p.onReach = cancel // the writer dies between taking and writing
	}
	go func() {
		defer cancel()
		_, err := s.Append(wctx, firstMsg, "")
		first <- err
	}()
	<-p.reached
	second = message.New(time.Now(), "h", "second")
	if _, err := s.Append(ctx, second, ""); err != nil {
		t.Fatalf("append second: %v", err)
	}
	return s, r, first, firstMsg, second, p
}

func testHoleSlowWriter(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, time.Minute)
	_, r, first, firstMsg, second, p := holeSetup(t, newStore, 5*time.Second, false)
	// The reader sees 2 but not 1: it must wait, delivering nothing.
	ds, err := r.f.Poll(ctx)
	if err != nil || len(ds) != 0 {
		t.Fatalf("reader delivered %d messages across a hole (err %v); want it to wait", len(ds), err)
	}
	time.Sleep(200 * time.Millisecond)
	close(p.release)
	if err := <-first; err != nil {
		t.Fatalf("slow writer within the hole timeout failed: %v", err)
	}
	r.pollUntil(t, ctx, 2)
	if r.got[0].Message.ID != firstMsg.ID || r.got[1].Message.ID != second.ID {
		t.Fatalf("got %s, %s; want the slow writer's message first", r.got[0].Message.Text, r.got[1].Message.Text)
	}
}

func testHoleTooLateWriter(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, time.Minute)
	holeTimeout := 500 * time.Millisecond
	s, r, first, firstMsg, second, p := holeSetup(t, newStore, holeTimeout, false)
	start := time.Now()
	r.pollUntil(t, ctx, 1)
	if waited := time.Since(start); waited < holeTimeout-50*time.Millisecond {
		t.Fatalf("reader skipped the hole after %v, before the hole timeout %v", waited, holeTimeout)
	}
	if r.got[0].Message.ID != second.ID {
		t.Fatalf("got %q, want %q", r.got[0].Message.Text, second.Text)
	}
	close(p.release)
	if err := <-first; !errors.Is(err, store.ErrHoleClosed) {
		t.Fatalf("too-late writer: err = %v, want ErrHoleClosed", err)
	}
	assertNeverDelivered(t, ctx, s, r, firstMsg)
}

func testHoleFailedWriter(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, time.Minute)
	s, r, first, firstMsg, second, p := holeSetup(t, newStore, 500*time.Millisecond, true)
	close(p.release)
	if err := <-first; err == nil {
		t.Fatalf("writer whose context died reported success")
	}
	r.pollUntil(t, ctx, 1)
	if r.got[0].Message.ID != second.ID {
		t.Fatalf("got %q, want %q", r.got[0].Message.Text, second.Text)
	}
	assertNeverDelivered(t, ctx, s, r, firstMsg)
}

func assertNeverDelivered(t *testing.T, ctx context.Context, s Store, r *reader, m message.Message) {
	t.Helper()
	more, err := whileUnavailable(ctx, func() ([]tail.Delivery, error) { return r.f.Poll(ctx) })
	if err != nil || len(more) != 0 {
		t.Fatalf("after the hole closed the reader delivered %d more (err %v)", len(more), err)
	}
	entries := mustRead(t, ctx, s, m.SessionID)
	for _, e := range entries {
		if e.Message.ID == m.ID {
			t.Fatalf("the failed writer's message is stored at %d", e.Seq)
		}
	}
	if len(entries) == 0 || entries[0].Seq != 1 || !entries[0].Tombstone {
		t.Fatalf("slot 1 = %+v, want a tombstone", entries)
	}
	_, replay, _ := openReader(t, ctx, s, fastOpts(), m.SessionID, "")
	for _, d := range replay {
		if d.Message.ID == m.ID {
			t.Fatalf("a fresh stream replayed the failed writer's message")
		}
	}
}

// A stream that opens while a writer holds a number below the head must not
// start past that number: the writer's message reaches it.
func testFreshSettles(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, time.Minute)
	p := newPauser(store.Partition("f"), 1)
	s := newStore(t, Options{BeforeWrite: p.hook})
	m1 := message.New(time.Now(), "f", "in flight")
	first := make(chan error, 1)
	go func() { _, err := s.Append(ctx, m1, ""); first <- err }()
	<-p.reached
	if _, err := s.Append(ctx, message.New(time.Now(), "f", "written"), ""); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); close(p.release) }()
	opts := fastOpts()
	opts.HoleTimeout = 10 * time.Second
	_, replay, _ := openReader(t, ctx, s, opts, "f", "")
	if err := <-first; err != nil {
		t.Fatalf("writer in flight while a stream opened failed: %v", err)
	}
	if len(replay) != 2 || replay[0].Message.ID != m1.ID {
		t.Fatalf("replay = %d messages; want both, the in-flight one first", len(replay))
	}
}

func testIdempotency(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	const n = 10
	results := make([]store.AppendResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			m := message.New(time.Now(), "idem", "once")
			results[i], errs[i] = appendKeyRetry(ctx, s, m, "key-1")
		}()
	}
	close(start)
	wg.Wait()
	replayed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if results[i].Message.ID != results[0].Message.ID || results[i].Message.Timestamp != results[0].Message.Timestamp || results[i].Seq != results[0].Seq {
			t.Fatalf("append %d = %+v, append 0 = %+v: want the same message", i, results[i], results[0])
		}
		if results[i].Replayed {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d of %d appends reported a replay, want %d", replayed, n, n-1)
	}
	entries := mustRead(t, ctx, s, "idem")
	stored := 0
	for _, e := range entries {
		if !e.Tombstone {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("%d messages stored for one idempotency key", stored)
	}
	// A later retry still gets the first answer.
	again, err := appendKeyRetry(ctx, s, message.New(time.Now(), "idem", "once"), "key-1")
	if err != nil || !again.Replayed || again.Message.ID != results[0].Message.ID {
		t.Fatalf("late retry = %+v, %v", again, err)
	}
}

func testExpiry(t *testing.T, newStore Factory) {
	clock := NewClock()
	ttl := time.Hour
	s := newStore(t, Options{TTL: ttl, Now: clock.Now})
	ctx := ctxFor(t, time.Minute)
	old := message.New(clock.Now(), "x", "old")
	if _, err := s.Append(ctx, old, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 2)
	var recent []message.Message
	for i := range 8 {
		m := message.New(clock.Now(), "x", fmt.Sprintf("recent %d", i))
		m.Timestamp += int64(i) // strictly increasing, whatever the clock
		if _, err := s.Append(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
		recent = append(recent, m)
	}
	clock.Advance(ttl/2 + 2*time.Second)

	entries, err := s.Read(ctx, store.Partition("x"), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Message.ID == old.ID && !e.Expired {
			t.Fatalf("expired message read as live")
		}
		if e.Message.ID != old.ID && e.Expired {
			t.Fatalf("live message %q read as expired", e.Message.Text)
		}
	}
	opts := fastOpts()
	opts.ReplayCount = 3
	opts.Now, opts.Retention = clock.Now, ttl
	_, replay, _ := openReader(t, ctx, s, opts, "x", "")
	if len(replay) != 3 {
		t.Fatalf("replay has %d messages, want 3", len(replay))
	}
	for i, d := range replay {
		if want := recent[len(recent)-3+i]; d.Message.ID != want.ID {
			t.Fatalf("replay[%d] = %q, want %q", i, d.Message.Text, want.Text)
		}
	}
	opts.ReplayCount = 50
	_, replay, _ = openReader(t, ctx, s, opts, "x", "")
	if len(replay) != len(recent) {
		t.Fatalf("replay of 50 has %d messages, want the %d unexpired", len(replay), len(recent))
	}
	// A cursor before the expired message is behind retained history.
	c := cursor.Cursor{Epoch: epoch(t, s), Session: 0, Stream: cursor.Tag("x")}
	_, _, reset := openReader(t, ctx, s, opts, "x", c.String())
	if reset != tail.ReasonBehind {
		t.Fatalf("resume before an expired message: reset %q, want %q", reset, tail.ReasonBehind)
	}
}

func epoch(t *testing.T, s Store) int64 {
	e, err := s.Epoch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testLeases(t *testing.T, newStore Factory) {
	clock := NewClock()
	s := newStore(t, Options{Now: clock.Now})
	ctx := ctxFor(t, time.Minute)
	count := func(scope store.LeaseScope, want int) {
		t.Helper()
		n, err := s.CountLeasesOf(ctx, scope)
		if err != nil || n != want {
			t.Fatalf("CountLeasesOf(%+v) = %d, %v; want %d", scope, n, err, want)
		}
		if scope == (store.LeaseScope{}) {
			if n, err := s.CountLeases(ctx); err != nil || n != want {
				t.Fatalf("CountLeases = %d, %v; want %d", n, err, want)
			}
		}
	}
	all, ipA, ipB, sessX := store.LeaseScope{}, store.LeaseScope{SourceIP: "192.0.2.1"}, store.LeaseScope{SourceIP: "2001:db8::2"}, store.LeaseScope{SessionID: "x"}
	count(all, 0)
	lease := func(id, ip, sess string) store.Lease {
		return store.Lease{ID: id, SourceIP: ip, SessionID: sess, ExpiresAt: clock.Now().Add(10 * time.Second)}
	}
	c1, c2, c3, c4 := lease("c1", ipA.SourceIP, "x"), lease("c2", ipA.SourceIP, ""), lease("c3", ipB.SourceIP, "x"), lease("c4", "", "y")
	for _, l := range []store.Lease{c1, c2, c3, c4} {
		if err := s.PutLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	count(all, 4)
	count(ipA, 2)
	count(ipB, 1)
	count(sessX, 2)
	leaseOf := func(id string, want store.Lease, found bool) {
		t.Helper()
		got, ok, err := s.LeaseOf(ctx, id)
		if err != nil || ok != found || (found && (got.ID != want.ID || got.SessionID != want.SessionID || got.SourceIP != want.SourceIP)) {
			t.Fatalf("LeaseOf(%q) = %+v, %v, %v; want %+v, %v", id, got, ok, err, want, found)
		}
	}
	leaseOf("c1", c1, true)
	leaseOf("c4", c4, true)
	leaseOf("c9", store.Lease{}, false)
	clock.Advance(6 * time.Second)
	c1.ExpiresAt = clock.Now().Add(10 * time.Second)
	if err := s.PutLease(ctx, c1); err != nil { // renew
		t.Fatal(err)
	}
	if err := s.DeleteLease(ctx, c2); err != nil {
		t.Fatal(err)
	}
	count(all, 3)
	count(ipA, 1)
	clock.Advance(6 * time.Second) // c3, c4 expired, c1 renewed
	count(all, 1)
	count(sessX, 1)
	count(ipB, 0)
	leaseOf("c3", store.Lease{}, false) // expired
	if err := s.DeleteLease(ctx, c1); err != nil {
		t.Fatal(err)
	}
	count(all, 0)
	count(ipA, 0)
	count(sessX, 0)
}

func testCounters(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	exp := time.Now().Add(2 * time.Minute)
	for want := int64(1); want <= 3; want++ {
		n, err := s.IncrementCounter(ctx, "ip#1.2.3.4#100", exp)
		if err != nil || n != want {
			t.Fatalf("IncrementCounter = %d, %v; want %d", n, err, want)
		}
	}
	var wg sync.WaitGroup
	var maxSeen atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.IncrementCounter(ctx, "ip#1.2.3.4#100", exp)
			if err != nil {
				t.Error(err)
			}
			for {
				m := maxSeen.Load()
				if n <= m || maxSeen.CompareAndSwap(m, n) {
					break
				}
			}
		}()
	}
	wg.Wait()
	if maxSeen.Load() != 23 {
		t.Fatalf("after 23 increments the counter reached %d", maxSeen.Load())
	}
	n, err := s.IncrementCounter(ctx, "ip#1.2.3.4#101", exp) // next window
	if err != nil || n != 1 {
		t.Fatalf("next window's counter = %d, %v; want 1", n, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testResume(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	r, _, _ := openReader(t, ctx, s, fastOpts(), "r", "")
	post := func(sess, text string) message.Message {
		m := message.New(time.Now(), sess, text)
		if _, err := appendRetry(ctx, s, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	post("r", "s1")
	post("", "b1")
	post("r", "s2")
	post("other", "not mine")
	r.pollUntil(t, ctx, 3)
	last := r.got[len(r.got)-1].Cursor
	var later []message.Message
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				sess := []string{"r", ""}[(w+i)%2]
				m := message.New(time.Now(), sess, fmt.Sprintf("later %d/%d", w, i))
				if _, err := appendRetry(ctx, s, m); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				later = append(later, m)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	post("other", "still not mine")
	r2, replay, reset := openReader(t, ctx, s, fastOpts(), "r", last.String())
	if reset != "" || len(replay) != 0 {
		t.Fatalf("resume from %v: reset %q, replay %d", last, reset, len(replay))
	}
	r2.pollUntil(t, ctx, len(later))
	want := map[string]bool{}
	for _, m := range later {
		want[m.ID] = true
	}
	for _, d := range r2.got {
		if !want[d.Message.ID] {
			t.Fatalf("resumed stream got %q, which came before the cursor or is not its own", d.Message.Text)
		}
	}
	if more, err := whileUnavailable(ctx, func() ([]tail.Delivery, error) { return r2.f.Poll(ctx) }); err != nil || len(more) != 0 {
		t.Fatalf("resumed stream got %d extra, %v", len(more), err)
	}
	// The connected cursor of a quiet stream resumes exactly too.
	quiet := r2.f.Cursor()
	m := post("r", "after quiet close")
	r3, _, reset := openReader(t, ctx, s, fastOpts(), "r", quiet.String())
	if reset != "" {
		t.Fatalf("resume from quiet cursor: reset %q", reset)
	}
	r3.pollUntil(t, ctx, 1)
	if r3.got[0].Message.ID != m.ID {
		t.Fatalf("got %q, want %q", r3.got[0].Message.Text, m.Text)
	}
}

func testResets(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	for i := range 7 {
		sess := []string{"z", ""}[i%2]
		if _, err := s.Append(ctx, message.New(time.Now().Add(time.Duration(i)*time.Millisecond), sess, fmt.Sprint(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	e := epoch(t, s)
	z := cursor.Tag("z")
	tests := []struct {
		last, reason string
	}{
		{"garbage", tail.ReasonMalformed},
		{cursor.Cursor{Epoch: e + 1, Session: 1, Broadcast: 1, Stream: z}.String(), tail.ReasonOtherEpoch},
		{cursor.Cursor{Epoch: e, Session: 99, Broadcast: 1, Stream: z}.String(), tail.ReasonAhead},
		{cursor.Cursor{Epoch: e, Session: 1, Broadcast: 99, Stream: z}.String(), tail.ReasonAhead},
		{cursor.Cursor{Epoch: e, Session: 1, Broadcast: 1, Stream: cursor.Tag("other")}.String(), tail.ReasonWrongSession},
		{cursor.Cursor{Epoch: e, Session: 0, Broadcast: 1, Stream: cursor.Tag("")}.String(), tail.ReasonWrongSession},
	}
	for _, tt := range tests {
		_, replay, reset := openReader(t, ctx, s, fastOpts(), "z", tt.last)
		if reset != tt.reason {
			t.Fatalf("cursor %q: reset %q, want %q", tt.last, reset, tt.reason)
		}
		if len(replay) != 5 {
			t.Fatalf("cursor %q: %d recent messages after the reset, want 5", tt.last, len(replay))
		}
		for i, d := range replay {
			if want := fmt.Sprint(i + 2); d.Message.Text != want {
				t.Fatalf("cursor %q: replay[%d] = %q, want %q (last 5 in total, oldest first)", tt.last, i, d.Message.Text, want)
			}
		}
	}
}

// Closing a slot that a writer filled meanwhile returns the message, and
// closing it twice returns the first tombstone.
func testTombstoneNeverOverwrites(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	m := message.New(time.Now(), "t", "written")
	if _, err := s.Append(ctx, m, ""); err != nil {
		t.Fatal(err)
	}
	part := store.Partition("t")
	e, err := s.Tombstone(ctx, part, 1)
	if err != nil || e.Tombstone || e.Message.ID != m.ID || e.Seq != 1 {
		t.Fatalf("Tombstone over a written slot = %+v, %v; want the message", e, err)
	}
	first, err := s.Tombstone(ctx, part, 5)
	if err != nil || !first.Tombstone || first.Seq != 5 {
		t.Fatalf("Tombstone of an empty slot = %+v, %v", first, err)
	}
	again, err := s.Tombstone(ctx, part, 5)
	if err != nil || !again.Tombstone || again.Message.Timestamp != first.Message.Timestamp {
		t.Fatalf("second Tombstone = %+v, %v; want the first one back", again, err)
	}
}

// testCloseSignals: a close signal ends the follower it names and no other,
// is never delivered, and moves every reader's cursor past it like a
// tombstone, so replay and resume are unchanged around it.
func testCloseSignals(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	open := func(session, conn string) *reader {
		opts := fastOpts()
		opts.ConnectionID = conn
		r, _, _ := openReader(t, ctx, s, opts, session, "")
		return r
	}
	closeRetry := func(partition, conn string) {
		t.Helper()
		for {
			err := s.AppendClose(ctx, partition, conn)
			if err == nil {
				return
			}
			// Under faults a refused or unknown outcome is retried, as the
			// close handler's caller (a page) would.
			if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrUnknownOutcome) && !errors.Is(err, store.ErrHoleClosed) || ctx.Err() != nil {
				t.Fatalf("AppendClose(%s, %s): %v", partition, conn, err)
			}
		}
	}
	mustAppend := func(session, text string) message.Message {
		t.Helper()
		m := message.New(time.Now(), session, text)
		if _, err := appendRetry(ctx, s, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Readers whose connection ids a signal names, and one it never does.
	r1, r2, r3 := open("s", "aaaaaaaaaaaaaaaaaaaaaaa1"), open("s", "aaaaaaaaaaaaaaaaaaaaaaa2"), open("", "aaaaaaaaaaaaaaaaaaaaaaa3")
	first := mustAppend("s", "before the signal")
	closeRetry(store.Partition("s"), "aaaaaaaaaaaaaaaaaaaaaaa1")
	second := mustAppend("s", "after the signal")
	closeRetry(store.BroadcastPartition, "aaaaaaaaaaaaaaaaaaaaaaa3")
	third := mustAppend("", "broadcast after both")

	for _, c := range []struct {
		name   string
		r      *reader
		want   []message.Message
		closed bool
	}{
		{"named in its session", r1, []message.Message{first, second, third}, true},
		{"same session, not named", r2, []message.Message{first, second, third}, false},
		{"named in broadcast", r3, []message.Message{third}, true},
	} {
		c.r.pollUntil(t, ctx, len(c.want))
		// One more poll: a signal after the last message is read too.
		ds, err := c.r.f.Poll(ctx)
		for errors.Is(err, store.ErrUnavailable) {
			ds, err = c.r.f.Poll(ctx)
		}
		if err != nil || len(ds) != 0 {
			t.Fatalf("%s: extra poll = %d deliveries, %v; want none", c.name, len(ds), err)
		}
		var got []string
		for _, d := range c.r.got {
			got = append(got, d.Message.ID)
		}
		var want []string
		for _, m := range c.want {
			want = append(want, m.ID)
		}
		// Across partitions the order may differ (a throttled read of one
		// delivers the other's first): compare what was delivered.
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: delivered %v, want %v (signals are never delivered)", c.name, got, want)
		}
		if c.r.f.Closed() != c.closed {
			t.Errorf("%s: Closed() = %v, want %v", c.name, c.r.f.Closed(), c.closed)
		}
	}

	// A fresh stream replays messages only; one resuming from before the
	// signals gets the same messages and is not closed by them.
	opts := fastOpts()
	opts.ReplayCount = 10
	_, replay, _ := openReader(t, ctx, s, opts, "s", "")
	if len(replay) != 3 {
		t.Errorf("fresh replay has %d deliveries, want the 3 messages", len(replay))
	}
	resumed, _, reset := openReader(t, ctx, s, fastOpts(), "s", r2.got[0].Cursor.String())
	if reset != "" {
		t.Fatalf("resume after the first message: reset %q", reset)
	}
	resumed.pollUntil(t, ctx, 2)
	if resumed.got[0].Message.ID != second.ID || resumed.got[1].Message.ID != third.ID || resumed.f.Closed() {
		t.Errorf("resumed stream got %v (closed %v), want the second and third messages, not closed", resumed.got, resumed.f.Closed())
	}
}
