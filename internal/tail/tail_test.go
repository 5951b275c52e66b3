package tail_test

// Unit tests of the follower against a small store kept in this file, where
// each test sets up exactly the partitions it needs: heads, floors, holes,
// stale and expired entries. storetest proves the same behaviour end to end
// on the real stores; these pin the reader's own decisions, one at a time.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

const epoch = 1764392500000

var (
	_ tail.Store    = (*fakeStore)(nil)
	_ tail.Notifier = (*notifyingStore)(nil)
)

// fakeStore is a tail.Store over maps. It records every Tombstone call.
type fakeStore struct {
	mu         sync.Mutex
	now        func() time.Time
	parts      map[string]*fakePart
	tombstoned []string // "partition/seq", in call order
}

type fakePart struct {
	head    store.Head
	entries map[uint64]store.Entry
}

func newFakeStore(now func() time.Time) *fakeStore {
	return &fakeStore{now: now, parts: map[string]*fakePart{}}
}

func (s *fakeStore) part(name string) *fakePart {
	p := s.parts[name]
	if p == nil {
		p = &fakePart{entries: map[uint64]store.Entry{}}
		s.parts[name] = p
	}
	return p
}

// setHead sets a partition's counter: the last number taken, when, and the
// floor.
func (s *fakeStore) setHead(partition string, seq uint64, takenAt time.Time, floor uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part(partition).head = store.Head{Seq: seq, TakenAt: takenAt, Floor: floor}
}

// write stores message seq of partition, stamped at, with the id
// "<partition>/<seq>".
func (s *fakeStore) write(partition string, seq uint64, at time.Time) {
	s.put(partition, store.Entry{Seq: seq, Message: msgAt(partition, seq, at)})
}

// writeExpired stores a message whose retention has passed but which the
// store has not deleted yet.
func (s *fakeStore) writeExpired(partition string, seq uint64, at time.Time) {
	s.put(partition, store.Entry{Seq: seq, Expired: true, Message: msgAt(partition, seq, at)})
}

func (s *fakeStore) put(partition string, e store.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part(partition).entries[e.Seq] = e
}

func msgAt(partition string, seq uint64, at time.Time) message.Message {
	session, _ := strings.CutPrefix(partition, "session#")
	if partition == store.BroadcastPartition {
		session = ""
	}
	return message.Message{ID: fmt.Sprintf("%s/%d", partition, seq), SessionID: session, Text: "m", Timestamp: at.UnixMilli()}
}

func (s *fakeStore) tombstones() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tombstoned)
}

func (s *fakeStore) Epoch(context.Context) (int64, error) { return epoch, nil }

func (s *fakeStore) Head(_ context.Context, partition string) (store.Head, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part(partition).head, nil
}

func (s *fakeStore) sorted(partition string) []store.Entry {
	var out []store.Entry
	for _, e := range s.part(partition).entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

func (s *fakeStore) Read(_ context.Context, partition string, after uint64, limit int) ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Entry
	for _, e := range s.sorted(partition) {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *fakeStore) ReadBefore(_ context.Context, partition string, before uint64, limit int) ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.sorted(partition)
	slices.Reverse(all)
	var out []store.Entry
	for _, e := range all {
		if e.Seq < before && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *fakeStore) Tombstone(_ context.Context, partition string, seq uint64) (store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tombstoned = append(s.tombstoned, fmt.Sprintf("%s/%d", partition, seq))
	p := s.part(partition)
	if e, ok := p.entries[seq]; ok {
		return e, nil
	}
	e := store.Entry{Seq: seq, Tombstone: true, Message: message.Message{Timestamp: s.now().UnixMilli()}}
	p.entries[seq] = e
	return e, nil
}

// notifyingStore adds tail.Notifier: one channel per slot, never closed
// here, so that a test can tell which channel a follower waits on.
type notifyingStore struct {
	*fakeStore
	nmu    sync.Mutex
	filled map[string]chan struct{}
}

func (s *notifyingStore) Changed(string) <-chan struct{} { return nil }

func (s *notifyingStore) Filled(partition string, seq uint64) <-chan struct{} {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	key := fmt.Sprintf("%s/%d", partition, seq)
	if s.filled[key] == nil {
		s.filled[key] = make(chan struct{})
	}
	return s.filled[key]
}

// ---- helpers -----------------------------------------------------------------

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// at is the cursor of a broadcast-only stream at pos.
func at(pos uint64) string {
	return cursor.Cursor{Epoch: epoch, Broadcast: pos, Stream: cursor.Tag("")}.String()
}

func open(t *testing.T, st tail.Store, opts tail.Options, session, last string) (*tail.Follower, []tail.Delivery) {
	t.Helper()
	f, replay, reset, err := tail.Open(ctx(t), st, opts, session, last)
	if err != nil {
		t.Fatalf("Open(%q, %q): %v", session, last, err)
	}
	if reset != "" {
		t.Fatalf("Open(%q, %q): reset %q, want an exact resume", session, last, reset)
	}
	return f, replay
}

func poll(t *testing.T, f *tail.Follower) []tail.Delivery {
	t.Helper()
	ds, err := f.Poll(ctx(t))
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	return ds
}

func ids(ds []tail.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Message.ID)
	}
	return out
}

func want[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// ---- holes while following ---------------------------------------------------

// TestHoles: a follower at 1 finds numbers above 1 missing and the head
// further up. Each step advances the clock and polls once; the table says
// what must be delivered and tombstoned by then.
func TestHoles(t *testing.T) {
	const hole = 2 * time.Second
	b := store.BroadcastPartition
	type step struct {
		advance time.Duration
		write   []uint64 // slow writers arriving before this poll
		deliver []string
		closed  []string // every Tombstone call so far
	}
	tests := []struct {
		name    string
		written []uint64 // besides 1, before the first poll
		head    uint64
		stale   bool // the entries above the hole are older than store.StaleAge
		steps   []step
	}{
		{
			name: "waits the timeout, then tombstones", written: []uint64{3}, head: 3,
			steps: []step{
				{deliver: []string{}, closed: []string{}},
				{advance: hole / 2, deliver: []string{}, closed: []string{}},
				{advance: hole/2 - time.Millisecond, deliver: []string{}, closed: []string{}},
				{advance: time.Millisecond, deliver: []string{"broadcast/3"}, closed: []string{"broadcast/2"}},
			},
		},
		{
			name: "a slow writer within the timeout is delivered in order", written: []uint64{3}, head: 3,
			steps: []step{
				{deliver: []string{}, closed: []string{}},
				{advance: hole - time.Millisecond, write: []uint64{2}, deliver: []string{"broadcast/2", "broadcast/3"}, closed: []string{}},
			},
		},
		{
			name: "a gap of several numbers closes in one go after one timeout", written: []uint64{6}, head: 6,
			steps: []step{
				{deliver: []string{}, closed: []string{}},
				{advance: hole, deliver: []string{"broadcast/6"}, closed: []string{"broadcast/2", "broadcast/3", "broadcast/4", "broadcast/5"}},
			},
		},
		{
			name: "a stale neighbour closes the hole at once", written: []uint64{3}, head: 3, stale: true,
			steps: []step{
				{deliver: []string{"broadcast/3"}, closed: []string{"broadcast/2"}},
			},
		},
		{
			name: "nothing above the hole yet: nothing to wait for", head: 3,
			steps: []step{
				{deliver: []string{}, closed: []string{}},
				{advance: hole, deliver: []string{}, closed: []string{}},
				{write: []uint64{2, 3}, deliver: []string{"broadcast/2", "broadcast/3"}, closed: []string{}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := storetest.NewClock()
			st := newFakeStore(clock.Now)
			written := clock.Now()
			if tt.stale {
				written = written.Add(-store.StaleAge - time.Second)
			}
			st.setHead(b, tt.head, clock.Now(), 0)
			st.write(b, 1, written)
			for _, n := range tt.written {
				st.write(b, n, written)
			}
			f, _ := open(t, st, tail.Options{HoleTimeout: hole, PollInterval: time.Second, Now: clock.Now}, "", at(1))
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				for _, n := range s.write {
					st.write(b, n, clock.Now())
				}
				ds := poll(t, f)
				want(t, fmt.Sprintf("step %d: delivered", i), ids(ds), s.deliver)
				want(t, fmt.Sprintf("step %d: tombstoned", i), st.tombstones(), s.closed)
				for _, d := range ds {
					seq := d.Message.ID[len("broadcast/"):]
					if got := fmt.Sprint(d.Cursor.Broadcast); got != seq {
						t.Errorf("step %d: %s carries cursor %v, want the position after itself", i, d.Message.ID, d.Cursor)
					}
				}
			}
		})
	}
}

// TestFloor: numbers at or below the partition's floor cannot be written
// any more; a follower passes them without a Tombstone call, while the
// messages retained among them are delivered.
func TestFloor(t *testing.T) {
	clock := storetest.NewClock()
	st := newFakeStore(clock.Now)
	b := store.BroadcastPartition
	st.setHead(b, 6, clock.Now(), 5)
	st.write(b, 2, clock.Now())
	st.write(b, 4, clock.Now()) // 3 and 5 missing, at or below the floor
	st.write(b, 6, clock.Now())
	f, _ := open(t, st, tail.Options{HoleTimeout: time.Hour, Now: clock.Now}, "", at(2))
	want(t, "delivered", ids(poll(t, f)), []string{"broadcast/4", "broadcast/6"})
	want(t, "tombstoned", st.tombstones(), []string{})
}

// TestPendingHoleDoesNotSpin: a full read batch stopped by a hole must not
// ask for an immediate poll again (that would read the store in a loop until
// the hole's deadline); with a Notifier the follower waits on that slot.
func TestPendingHoleDoesNotSpin(t *testing.T) {
	const hole = 2 * time.Second
	for _, notify := range []bool{false, true} {
		t.Run(fmt.Sprintf("notifier=%v", notify), func(t *testing.T) {
			clock := storetest.NewClock()
			fs := newFakeStore(clock.Now)
			b := store.BroadcastPartition
			fs.setHead(b, 201, clock.Now(), 0)
			for n := uint64(2); n <= 201; n++ { // more than one read batch, number 1 missing
				fs.write(b, n, clock.Now())
			}
			var st tail.Store = fs
			ns := &notifyingStore{fakeStore: fs, filled: map[string]chan struct{}{}}
			if notify {
				st = ns
			}
			f, _ := open(t, st, tail.Options{HoleTimeout: hole, PollInterval: 500 * time.Millisecond, Now: clock.Now}, "", at(0))
			if ds := poll(t, f); len(ds) != 0 {
				t.Fatalf("delivered %v past a hole that is still within its timeout", ids(ds))
			}
			w := f.Next()
			if w.After <= 0 || w.After > hole {
				t.Errorf("Next().After = %v, want a wait in (0, %v]", w.After, hole)
			}
			if notify && w.C[0] != ns.Filled(b, 1) {
				t.Error("Next() does not wait on the missing slot's Filled channel")
			}
			clock.Advance(hole)
			ds := poll(t, f)
			if len(ds) != 100 || ds[0].Message.ID != "broadcast/2" {
				t.Fatalf("after the timeout: delivered %d from %v, want the read batch of 100 from broadcast/2", len(ds), ids(ds[:min(len(ds), 1)]))
			}
			if f.Next().After != 0 {
				t.Error("a full batch without a hole must ask to poll again at once")
			}
			want(t, "tombstoned", fs.tombstones(), []string{"broadcast/1"})
		})
	}
}

// ---- a fresh stream settles ----------------------------------------------------

// TestFreshSettlesInFlightWriter: a fresh stream starts at the head, so every
// number below it that a writer may still hold must be settled first, however
// far below the head: Open waits for it (and takes it when it comes) or
// closes it after HoleTimeout.
func TestFreshSettlesInFlightWriter(t *testing.T) {
	b := store.BroadcastPartition
	tests := []struct {
		name        string
		holeTimeout time.Duration
		writeAfter  time.Duration // 0: the writer never comes
		closed      []string
	}{
		{"the writer comes within the timeout", 10 * time.Second, 150 * time.Millisecond, []string{}},
		{"the writer never comes", 300 * time.Millisecond, 0, []string{"broadcast/50"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore(time.Now)
			st.setHead(b, 300, time.Now(), 0)
			for n := uint64(1); n <= 300; n++ {
				if n != 50 { // 250 below the head: beyond one read batch
					st.write(b, n, time.Now())
				}
			}
			wrote := make(chan struct{})
			if tt.writeAfter > 0 {
				time.AfterFunc(tt.writeAfter, func() { st.write(b, 50, time.Now()); close(wrote) })
			}
			start := time.Now()
			f, replay := open(t, st, tail.Options{HoleTimeout: tt.holeTimeout, ReplayCount: 2}, "", "")
			took := time.Since(start)
			want(t, "tombstoned", st.tombstones(), tt.closed)
			want(t, "replay", ids(replay), []string{"broadcast/299", "broadcast/300"})
			want(t, "cursor", f.Cursor().Broadcast, uint64(300))
			if tt.writeAfter > 0 {
				select {
				case <-wrote:
				default:
					t.Fatalf("Open returned after %v, before the writer of 50 wrote: the stream would skip it", took)
				}
				if took >= tt.holeTimeout {
					t.Errorf("Open took %v: it waited out the timeout although the writer came", took)
				}
			} else if took < tt.holeTimeout {
				t.Errorf("Open closed 50 after %v, before HoleTimeout %v", took, tt.holeTimeout)
			}
		})
	}
}

// TestFreshSettleBounds: settling stops at an entry older than any writer
// stays in flight, or at the floor; below either, missing numbers are no
// writer's and are neither waited for nor written.
func TestFreshSettleBounds(t *testing.T) {
	b := store.BroadcastPartition
	tests := []struct {
		name   string
		floor  uint64
		stale  uint64 // entries at or below it are older than store.StaleAge
		absent []uint64
		replay []string
	}{
		{"stops at a stale entry", 0, 5, []uint64{3}, []string{"broadcast/8", "broadcast/9", "broadcast/10"}},
		{"stops at the floor", 6, 0, []uint64{1, 2, 3, 4, 5, 6}, []string{"broadcast/8", "broadcast/9", "broadcast/10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			st := newFakeStore(time.Now)
			st.setHead(b, 10, now, tt.floor)
			for n := uint64(1); n <= 10; n++ {
				if slices.Contains(tt.absent, n) {
					continue
				}
				written := now
				if n <= tt.stale {
					written = now.Add(-store.StaleAge - time.Minute)
				}
				st.write(b, n, written)
			}
			// A wait for the absent numbers would outlast the test's context.
			f, replay := open(t, st, tail.Options{HoleTimeout: time.Hour, ReplayCount: 3}, "", "")
			want(t, "tombstoned", st.tombstones(), []string{})
			want(t, "replay", ids(replay), tt.replay)
			want(t, "cursor", f.Cursor().Broadcast, uint64(10))
		})
	}
}

// TestReplayAcrossPartitions: a fresh stream of a session replays the last
// ReplayCount messages of its session and broadcast partitions together,
// merged by timestamp; each replayed event's cursor resumes exactly the
// events after it, and the connected event's cursor (Start) the whole
// replay.
func TestReplayAcrossPartitions(t *testing.T) {
	clock := storetest.NewClock()
	st := newFakeStore(clock.Now)
	s, b := store.Partition("s"), store.BroadcastPartition
	t0 := clock.Now().Add(-time.Minute)
	// By time: s1 b1 s2 b2 s3 b3 s4.
	for i, p := range []string{s, b, s, b, s, b, s} {
		seq := uint64(i/2 + 1)
		st.write(p, seq, t0.Add(time.Duration(i)*time.Second))
	}
	st.setHead(s, 4, t0, 0)
	st.setHead(b, 3, t0, 0)
	opts := tail.Options{HoleTimeout: time.Hour, ReplayCount: 4, Now: clock.Now}

	f, replay := open(t, st, opts, "s", "")
	want(t, "replay", ids(replay), []string{"broadcast/2", "session#s/3", "broadcast/3", "session#s/4"})
	want(t, "start", f.Start(), cursor.Cursor{Epoch: epoch, Session: 2, Broadcast: 1, Stream: cursor.Tag("s")})
	want(t, "last replayed cursor", replay[len(replay)-1].Cursor, f.Cursor())

	resumeFrom := []string{f.Start().String()}
	for _, d := range replay {
		resumeFrom = append(resumeFrom, d.Cursor.String())
	}
	for k, c := range resumeFrom {
		g, _ := open(t, st, opts, "s", c)
		want(t, fmt.Sprintf("resumed from %s", c), ids(poll(t, g)), ids(replay[k:]))
	}
	want(t, "tombstoned", st.tombstones(), []string{})
}

// ---- resuming ----------------------------------------------------------------

// TestResumeBurstIsNotAReset: numbers right after a cursor that are all
// still being written (a burst of writers in flight, far more than any
// read) are holes like any other, not lost history.
func TestResumeBurstIsNotAReset(t *testing.T) {
	b := store.BroadcastPartition
	for _, top := range []bool{false, true} {
		t.Run(fmt.Sprintf("head written=%v", top), func(t *testing.T) {
			clock := storetest.NewClock()
			st := newFakeStore(clock.Now)
			st.setHead(b, 400, clock.Now(), 0)
			for n := uint64(1); n <= 10; n++ {
				st.write(b, n, clock.Now())
			}
			if top {
				st.write(b, 400, clock.Now())
			}
			// 11..399 (or 11..400) missing: 389 or more numbers.
			f, _ := open(t, st, tail.Options{HoleTimeout: time.Second, Now: clock.Now}, "", at(10))
			want(t, "cursor", f.Cursor().Broadcast, uint64(10))
			for range 3 {
				if ds := poll(t, f); len(ds) != 0 {
					t.Fatalf("delivered %v within the hole timeout", ids(ds))
				}
			}
			want(t, "tombstoned", st.tombstones(), []string{})
		})
	}
}

// TestResets: every cursor that cannot be resumed exactly gets its reason
// (and a fresh start at the heads); the valid ones beside them resume.
func TestResets(t *testing.T) {
	clock := storetest.NewClock()
	// A new store for each case: a fresh start after a reset writes
	// tombstones.
	newStore := func() *fakeStore {
		now := clock.Now()
		st := newFakeStore(clock.Now)
		s, b := store.Partition("s"), store.BroadcastPartition
		// Session: 1 and 2 expired (not deleted yet), 3 and 4 retained.
		st.writeExpired(s, 1, now.Add(-25*time.Hour))
		st.writeExpired(s, 2, now.Add(-25*time.Hour))
		st.write(s, 3, now)
		st.write(s, 4, now)
		st.setHead(s, 4, now, 0)
		// Broadcast: 5 numbers taken two days ago, every message deleted since.
		st.setHead(b, 5, now.Add(-48*time.Hour), 0)
		return st
	}

	tag := cursor.Tag("s")
	c := func(e int64, sess, bc uint64, tag uint32) string {
		return cursor.Cursor{Epoch: e, Session: sess, Broadcast: bc, Stream: tag}.String()
	}
	tests := []struct {
		name, session, cursor, reason string
	}{
		{"at the heads", "s", c(epoch, 4, 5, tag), ""},
		{"before retained messages", "s", c(epoch, 2, 5, tag), ""},
		{"broadcast-only at its head", "", c(epoch, 0, 5, cursor.Tag("")), ""},
		{"malformed", "s", "garbage", tail.ReasonMalformed},
		{"the three-part form of earlier versions", "s", "1764392500000.4.5", tail.ReasonMalformed},
		{"other epoch", "s", c(epoch+1, 4, 5, tag), tail.ReasonOtherEpoch},
		{"another session's stream", "s", c(epoch, 4, 5, cursor.Tag("t")), tail.ReasonWrongSession},
		{"a session position on a broadcast-only stream", "", c(epoch, 1, 5, cursor.Tag("")), tail.ReasonWrongSession},
		{"session ahead", "s", c(epoch, 5, 5, tag), tail.ReasonAhead},
		{"broadcast ahead", "s", c(epoch, 4, 6, tag), tail.ReasonAhead},
		{"behind: the first entry after it expired", "s", c(epoch, 0, 5, tag), tail.ReasonBehind},
		{"behind: nothing retained after it, numbers taken a retention ago", "s", c(epoch, 4, 2, tag), tail.ReasonBehind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, replay, reset, err := tail.Open(ctx(t), newStore(), tail.Options{HoleTimeout: time.Hour, ReplayCount: 5, Retention: 24 * time.Hour, Now: clock.Now}, tt.session, tt.cursor)
			if err != nil {
				t.Fatal(err)
			}
			if reset != tt.reason {
				t.Fatalf("reset %q, want %q", reset, tt.reason)
			}
			if reset == "" {
				if replay != nil || f.Cursor().String() != tt.cursor {
					t.Errorf("resumed at %v with replay %v, want the cursor itself and no replay", f.Cursor(), ids(replay))
				}
				return
			}
			// A fresh start: at the heads, with the recent messages.
			wantCur := cursor.Cursor{Epoch: epoch, Broadcast: 5, Stream: cursor.Tag(tt.session)}
			wantReplay := []string{}
			if tt.session != "" {
				wantCur.Session = 4
				wantReplay = []string{"session#s/3", "session#s/4"}
			}
			want(t, "cursor after reset", f.Cursor(), wantCur)
			want(t, "replay after reset", ids(replay), wantReplay)
		})
	}
}

// TestDefaults: zero options take internal/config's HOLE_TIMEOUT and
// MESSAGE_TTL defaults.
func TestDefaults(t *testing.T) {
	def := config.Defaults()
	b := store.BroadcastPartition

	t.Run("HoleTimeout", func(t *testing.T) {
		clock := storetest.NewClock()
		st := newFakeStore(clock.Now)
		st.setHead(b, 3, clock.Now(), 0)
		st.write(b, 1, clock.Now())
		st.write(b, 3, clock.Now())
		f, _ := open(t, st, tail.Options{Now: clock.Now}, "", at(1))
		poll(t, f)
		clock.Advance(def.HoleTimeout - time.Millisecond)
		if ds := poll(t, f); len(ds) != 0 {
			t.Fatalf("hole closed before config's HOLE_TIMEOUT %v", def.HoleTimeout)
		}
		clock.Advance(time.Millisecond)
		want(t, "delivered at HOLE_TIMEOUT", ids(poll(t, f)), []string{"broadcast/3"})
	})

	t.Run("Retention", func(t *testing.T) {
		for _, tt := range []struct {
			age    time.Duration
			reason string
		}{
			{def.MessageTTL - time.Minute, ""},
			{def.MessageTTL + time.Minute, tail.ReasonBehind},
		} {
			clock := storetest.NewClock()
			st := newFakeStore(clock.Now)
			st.setHead(b, 5, clock.Now().Add(-tt.age), 0)
			_, _, reset, err := tail.Open(ctx(t), st, tail.Options{Now: clock.Now}, "", at(2))
			if err != nil || reset != tt.reason {
				t.Errorf("numbers taken %v ago, none retained: reset %q (%v), want %q", tt.age, reset, err, tt.reason)
			}
		}
	})
}
