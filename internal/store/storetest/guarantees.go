package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

// The tests of this file pin what production DynamoDB does and DynamoDB
// Local does not: bursts of writers in flight, 1 MB pages, short retention.

// A stream that opens while a writer holds a number hundreds below the head
// (a burst: API Gateway lets 100 through at once; throttled writers wait
// seconds in SDK retries) must not start past it: either it waits for the
// writer, or it closes the number and the writer fails. Never a 200 that the
// stream misses.
func testFreshSettlesDeepWriter(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, 2*time.Minute)
	part := store.Partition("deep")
	p := newPauser(part, 0) // its first number, whichever (faults may refuse a taking)
	s := newStore(t, Options{BeforeWrite: p.hook})
	m1 := message.New(time.Now(), "deep", "in flight")
	first := make(chan error, 1)
	go func() {
		for {
			// Bounded as ingest bounds every writer: a reader relies on that
			// bound when it passes a number below an entry older than StaleAge.
			wctx, cancel := context.WithTimeout(ctx, store.MaxWriteTime)
			_, err := s.Append(wctx, m1, "")
			cancel()
			if p.fired.Load() || !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
				first <- err
				return
			}
			time.Sleep(10 * time.Millisecond) // refused before it took a number: again, as a sender would
		}
	}()
	select {
	case <-p.reached:
	case err := <-first:
		t.Fatalf("the writer ended before taking a number: %v", err)
	}
	const later = 300
	for i := range later {
		if _, err := appendRetry(ctx, s, message.New(time.Now(), "deep", fmt.Sprint("later ", i))); err != nil {
			t.Fatal(err)
		}
	}
	opts := fastOpts()
	opts.HoleTimeout = time.Second
	// The writer goes on when the stream has opened, or after twice the
	// hole timeout: a stream that skipped it lets it succeed unseen.
	released := make(chan struct{})
	var byTimer atomic.Bool
	go func() {
		select {
		case <-released:
		case <-time.After(2 * opts.HoleTimeout):
			byTimer.Store(true)
		}
		close(p.release)
	}()
	r, _, _ := openReader(t, ctx, s, opts, "deep", "")
	close(released)
	err := <-first
	if err == nil && byTimer.Load() {
		// Released while the open was still settling (a slow, throttled
		// open under faults): the write may have been committed before the
		// stream's start, as history. Only a writer released after the open
		// tells a skip apart.
		return
	}
	if err == nil {
		// Written after the stream opened: it must deliver it.
		if cerr := r.collect(ctxFor(t, 3*time.Second), 1); cerr != nil || r.got[0].Message.ID != m1.ID {
			t.Fatalf("writer %d numbers below the head got 200, but the stream that opened meanwhile never delivered it (%v)", later, cerr)
		}
		return
	}
	if !errors.Is(err, store.ErrHoleClosed) && !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUnknownOutcome) {
		t.Fatalf("writer: %v, want success, or not stored", err)
	}
	head, err := whileUnavailable(ctx, func() (store.Head, error) { return s.Head(ctx, part) })
	if c := r.f.Cursor(); err != nil || c.Session != head.Seq {
		t.Fatalf("cursor after open = %v, want the head %d (%v)", c, head.Seq, err)
	}
	assertNeverDelivered(t, ctx, s, r, m1)
}

// countingStore counts a follower's reads.
type countingStore struct {
	Store
	reads atomic.Int64
}

func (c *countingStore) Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error) {
	c.reads.Add(1)
	return c.Store.Read(ctx, partition, after, limit)
}

// countingNotifier keeps the store's instant wake-up visible to tail.
type countingNotifier struct {
	*countingStore
	tail.Notifier
}

func counted(s Store) (tail.Store, *countingStore) {
	c := &countingStore{Store: s}
	if n, ok := s.(tail.Notifier); ok {
		return countingNotifier{c, n}, c
	}
	return c, c
}

// A hole below a full batch must not make the reader spin: reads stay at
// about one per poll interval (plus the hole's own deadline).
func testHolePendingReads(t *testing.T, newStore Factory) {
	ctx := ctxFor(t, time.Minute)
	part := store.Partition("spin")
	p := newPauser(part, 1)
	s := newStore(t, Options{BeforeWrite: p.hook})
	go func() { _, _ = s.Append(ctx, message.New(time.Now(), "spin", "held"), "") }()
	<-p.reached
	defer close(p.release)
	for i := range 150 {
		if _, err := s.Append(ctx, message.New(time.Now(), "spin", fmt.Sprint(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	ts, c := counted(s)
	opts := fastOpts()
	opts.PollInterval, opts.HoleTimeout = 250*time.Millisecond, time.Minute
	f, _, _, err := tail.Open(ctx, ts, opts, "spin", cursorAtStart(t, ctx, s, "spin"))
	if err != nil {
		t.Fatal(err)
	}
	c.reads.Store(0)
	window := 1500 * time.Millisecond
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		ds, err := f.Poll(ctx)
		if err != nil || len(ds) != 0 {
			t.Fatalf("poll across a pending hole: %d delivered, %v", len(ds), err)
		}
		w := f.Next()
		timer := time.NewTimer(min(w.After, time.Until(deadline)))
		select {
		case <-w.C[0]:
		case <-w.C[1]:
		case <-timer.C:
		}
		timer.Stop()
	}
	// Two partitions, one read each per poll interval.
	limit := 2 * (int64(window/opts.PollInterval) + 2)
	if n := c.reads.Load(); n > limit {
		t.Fatalf("%d reads in %v while a hole was pending; want at most %d (about one per partition per poll interval)", n, window, limit)
	}
}

// cursorAtStart is a cursor before anything of session and broadcast.
// Built by hand: opening a fresh stream would settle the hole under test.
func cursorAtStart(t *testing.T, ctx context.Context, s Store, session string) string {
	t.Helper()
	return cursor.Cursor{Epoch: epoch(t, s), Stream: cursor.Tag(session)}.String()
}

// Large messages fill DynamoDB's 1 MB pages: a read must follow them up to
// its limit, and a fresh stream must not mistake the cut-off for holes.
func testLargeMessagesPaged(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, 2*time.Minute)
	const n = 40
	text := strings.Repeat("x", 90_000) // 3.6 MB in all: four pages
	for i := range n {
		if _, err := appendRetry(ctx, s, message.New(time.Now(), "big", fmt.Sprintf("%02d%s", i, text))); err != nil {
			t.Fatal(err)
		}
	}
	messages := func(es []store.Entry) int {
		return len(slices.DeleteFunc(es, func(e store.Entry) bool { return e.Tombstone }))
	}
	// Under injected faults a failed attempt leaves its own tombstone: the
	// head may be above n.
	head, err := whileUnavailable(ctx, func() (store.Head, error) { return s.Head(ctx, store.Partition("big")) })
	if err != nil {
		t.Fatal(err)
	}
	if got := messages(mustRead(t, ctx, s, "big")); got != n {
		t.Fatalf("Read of %d large messages returned %d", n, got)
	}
	down, err := whileUnavailable(ctx, func() ([]store.Entry, error) { return s.ReadBefore(ctx, store.Partition("big"), head.Seq+1, 100) })
	if err != nil || messages(down) != n || down[0].Seq != head.Seq {
		t.Fatalf("ReadBefore of %d large messages returned %d, %v", n, messages(down), err)
	}
	opts := fastOpts()
	opts.ReplayCount, opts.HoleTimeout = n, 30*time.Second
	start := time.Now()
	_, replay, _ := openReader(t, ctx, s, opts, "big", "")
	if len(replay) != n {
		t.Fatalf("replay of %d large messages has %d", n, len(replay))
	}
	// In fair weather nothing is missing: a wait would be page ends taken
	// for holes. (Under faults a writer whose own closing failed leaves a
	// real hole, waited out.)
	if waited := time.Since(start); head.Seq == n && waited > 10*time.Second {
		t.Fatalf("a fresh stream took %v over large messages: it waited on page ends as if they were holes", waited)
	}
	if es := mustRead(t, ctx, s, "big"); head.Seq == n && messages(es) != len(es) {
		t.Fatalf("%d slots were tombstoned: a page end was taken for a hole", len(es)-messages(es))
	}
}

func mustRead(t *testing.T, ctx context.Context, s Store, session string) []store.Entry {
	t.Helper()
	entries, err := whileUnavailable(ctx, func() ([]store.Entry, error) { return s.Read(ctx, store.Partition(session), 0, 1000) })
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// whileUnavailable repeats a read while the store is unavailable (injected faults).
func whileUnavailable[T any](ctx context.Context, read func() (T, error)) (T, error) {
	for {
		v, err := read()
		if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A message is never expired before its retention has passed, whatever the
// fraction of a second it was written at.
func testNeverExpiresEarly(t *testing.T, newStore Factory) {
	clock := &Clock{now: time.Now().Truncate(time.Second).Add(900 * time.Millisecond)}
	ttl := 90 * time.Second
	s := newStore(t, Options{TTL: ttl, Now: clock.Now})
	ctx := ctxFor(t, time.Minute)
	if _, err := s.Append(ctx, message.New(clock.Now(), "ttl", "short-lived"), ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl - 100*time.Millisecond)
	if e := mustRead(t, ctx, s, "ttl"); len(e) != 1 || e[0].Expired {
		t.Fatalf("100 ms before its retention ends the message reads as %+v, want it live", e)
	}
	clock.Advance(2 * time.Second)
	if e := mustRead(t, ctx, s, "ttl"); len(e) == 1 && !e[0].Expired {
		t.Fatalf("2 s after its retention the message still reads as live")
	}
}

// Every replayed event carries the cursor after itself: resuming from the
// k-th gets exactly the rest, and the connected cursor gets all of them.
func testReplayCursors(t *testing.T, newStore Factory) {
	s := newStore(t, Options{})
	ctx := ctxFor(t, time.Minute)
	base := time.Now()
	for i := range 6 {
		sess := []string{"rc", ""}[i%2]
		m := message.New(base.Add(time.Duration(i)*time.Millisecond), sess, fmt.Sprint(i))
		if _, err := appendRetry(ctx, s, m); err != nil {
			t.Fatal(err)
		}
	}
	opts := fastOpts()
	opts.ReplayCount = 4
	r, replay, _ := openReader(t, ctx, s, opts, "rc", "")
	if len(replay) != 4 || replay[0].Message.Text != "2" {
		t.Fatalf("replay = %d messages starting %q; want 2..5", len(replay), replay[0].Message.Text)
	}
	resumeFrom := []string{r.f.Start().String()}
	for _, d := range replay {
		resumeFrom = append(resumeFrom, d.Cursor.String())
	}
	for k, c := range resumeFrom {
		rr, again, reset := openReader(t, ctx, s, opts, "rc", c)
		if reset != "" || len(again) != 0 {
			t.Fatalf("resume from %q: reset %q, replay %d", c, reset, len(again))
		}
		want := replay[k:]
		if len(want) > 0 {
			rr.pollUntil(t, ctx, len(want))
		}
		for i, d := range rr.got {
			if i >= len(want) || d.Message.ID != want[i].Message.ID {
				t.Fatalf("resume from event %d (%q): got %q at %d, want the rest of the replay", k, c, d.Message.Text, i)
			}
		}
		if more, err := whileUnavailable(ctx, func() ([]tail.Delivery, error) { return rr.f.Poll(ctx) }); err != nil || len(more) != 0 {
			t.Fatalf("resume from event %d: %d more than the rest, %v", k, len(more), err)
		}
	}
}
