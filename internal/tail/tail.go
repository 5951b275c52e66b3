// Package tail follows a stream's partitions in a store: it positions a new
// stream (fresh, or resumed from a cursor), replays recent messages, and
// delivers each later message exactly once, in sequence order per partition.
//
// Writers take a sequence number and then write it, so a reader can see n+1
// before n. A Follower never passes a number it has neither seen nor
// tombstoned, unless no writer can still write it (it is at or below the
// partition's floor): it waits up to HoleTimeout for a missing number, then
// closes it with a conditional tombstone; a writer that comes later finds
// its slot taken and fails, so its sender retries (docs/design.md, "Holes").
package tail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// Store is what a Follower reads and writes.
type Store interface {
	Epoch(ctx context.Context) (int64, error)
	Head(ctx context.Context, partition string) (store.Head, error)
	// Read returns up to limit entries numbered above after, in order.
	Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error)
	// ReadBefore returns up to limit entries numbered below before,
	// highest first.
	ReadBefore(ctx context.Context, partition string, before uint64, limit int) ([]store.Entry, error)
	// Tombstone closes seq unless it was written and returns what the slot
	// holds; for a number below a purged floor it may return an entry at the
	// floor, which settles the whole run.
	Tombstone(ctx context.Context, partition string, seq uint64) (store.Entry, error)
}

// Notifier is implemented by stores that can wake readers at once on a write.
type Notifier interface {
	// Changed returns a channel closed at the next write to partition.
	Changed(partition string) <-chan struct{}
	// Filled returns a channel closed once slot seq of partition is written
	// or tombstoned: a reader waiting on a hole wakes for that, not for
	// every write above it.
	Filled(partition string, seq uint64) <-chan struct{}
}

// Options tune a Follower. The stream handler passes its configuration;
// zero durations take internal/config's defaults (HOLE_TIMEOUT,
// POLL_INTERVAL, MESSAGE_TTL).
type Options struct {
	HoleTimeout  time.Duration    // wait for a missing number
	PollInterval time.Duration    // between reads when the store cannot notify
	ReplayCount  int              // recent messages for a fresh stream
	Retention    time.Duration    // message TTL
	Now          func() time.Time // clock for expiry decisions; default time.Now
	// ConnectionID is the stream's: a close signal for it in a followed
	// partition ends the follow (Closed).
	ConnectionID string
	// Hub, when set, shares the reading of each partition with the other
	// followers of this process that use it (see Hub). Close the follower.
	Hub *Hub
}

// defaults is read once: config parses every variable's default to make it.
var defaults = sync.OnceValue(config.Defaults)

func (o Options) withDefaults() Options {
	def := defaults()
	if o.HoleTimeout <= 0 {
		o.HoleTimeout = def.HoleTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = def.PollInterval
	}
	if o.Retention <= 0 {
		o.Retention = def.MessageTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

const (
	// readBatch bounds one read; a full batch means more is waiting.
	readBatch = 100
	// settlePoll paces re-reads while a fresh stream waits for holes.
	settlePoll = 20 * time.Millisecond
)

// Reset reasons, sent to the client in a reset event.
const (
	ReasonMalformed    = "malformed cursor"
	ReasonOtherEpoch   = "cursor is from another store epoch"
	ReasonAhead        = "cursor is ahead of the stream"
	ReasonBehind       = "cursor is behind retained history"
	ReasonWrongSession = "cursor does not match this stream"
)

// Delivery is a message to send, with the stream's cursor after it.
type Delivery struct {
	Message message.Message
	Cursor  cursor.Cursor
}

// Follower follows a session partition (if any) and the broadcast partition.
// It is not safe for concurrent use: one stream owns it.
type Follower struct {
	reader
	epoch   int64
	tag     uint32
	parts   []*follow // session first when present, broadcast last
	session bool
	start   cursor.Cursor
	closed  bool // a close signal for this stream was read
}

// reader reads partitions: a Follower for itself, a feed for a Hub.
type reader struct {
	st       Store
	notifier Notifier
	opts     Options
}

type follow struct {
	name  string
	pos   uint64
	floor uint64 // numbers at or below it cannot be written any more
	// A gap pos+1..holeTop was seen missing since holeSince; when its
	// deadline passes, the whole gap is closed without waiting again.
	holeTop   uint64
	holeSince time.Time
	wakeAt    time.Time // hole deadline, zero when none
	more      bool
	changed   <-chan struct{} // taken before the last read, so no write is missed
	// feed shares the partition's reads (Options.Hub); viaFeed tells that
	// the last poll was served by it, so changed and wakeAt are the feed's.
	feed    *feed
	viaFeed bool
	holes   int // tombstones written by this follow's reads
	// Buffers of one poll's messages, kept for the next: a stream polls
	// at every write of a busy partition.
	msgs []message.Message
	seqs []uint64
}

// Wake tells a stream when to poll again: when either channel is closed, or
// after After, whichever is first. Nil channels never fire.
type Wake struct {
	C     [2]<-chan struct{}
	After time.Duration
}

// Open positions a follower for sessionID ("" for broadcast only). With a
// lastEventID it resumes after that cursor; a cursor that cannot be resumed
// exactly yields a reset reason and a fresh start. A fresh start returns the
// replay: the ReplayCount most recent messages across both partitions,
// oldest first, each with the cursor after itself. A resumed follower
// returns no replay: its first Poll catches up.
func Open(ctx context.Context, st Store, opts Options, sessionID, lastEventID string) (f *Follower, replay []Delivery, reset string, err error) {
	opts = opts.withDefaults()
	epoch, err := st.Epoch(ctx)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read store epoch: %w", err)
	}
	f = &Follower{reader: reader{st: st, opts: opts}, epoch: epoch, tag: cursor.Tag(sessionID), session: sessionID != ""}
	f.notifier, _ = st.(Notifier)
	if sessionID != "" {
		f.parts = append(f.parts, &follow{name: store.Partition(sessionID)})
	}
	f.parts = append(f.parts, &follow{name: store.BroadcastPartition})

	if lastEventID != "" {
		reset, err = f.resume(ctx, lastEventID)
		if err != nil {
			return nil, nil, "", err
		}
		if reset == "" {
			f.start = f.Cursor()
			f.attach()
			return f, nil, "", nil
		}
	}
	replay, err = f.fresh(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	f.attach()
	return f, replay, reset, nil
}

// attach joins the hub's feeds once the follower is positioned.
func (f *Follower) attach() {
	if f.opts.Hub == nil {
		return
	}
	for _, p := range f.parts {
		p.feed = f.opts.Hub.acquire(f.reader, p)
	}
}

// Close leaves the hub's feeds. A follower without a hub needs no Close;
// calling it anyway is fine, and so is calling it twice.
func (f *Follower) Close() {
	for _, p := range f.parts {
		if p.feed != nil {
			f.opts.Hub.release(p.feed)
			p.feed = nil
		}
	}
}

// Cursor is the stream's position: every number at or below it in each
// partition has been delivered or skipped.
func (f *Follower) Cursor() cursor.Cursor {
	var pos [2]uint64
	for i, p := range f.parts {
		pos[i] = p.pos
	}
	return f.cursorAt(pos[:len(f.parts)])
}

// cursorAt is the cursor for positions in f.parts order.
func (f *Follower) cursorAt(pos []uint64) cursor.Cursor {
	c := cursor.Cursor{Epoch: f.epoch, Stream: f.tag, Broadcast: pos[len(pos)-1]}
	if f.session {
		c.Session = pos[0]
	}
	return c
}

func (f *Follower) resume(ctx context.Context, lastEventID string) (reset string, err error) {
	c, err := cursor.Parse(lastEventID)
	if err != nil {
		return ReasonMalformed, nil
	}
	if c.Epoch != f.epoch {
		return ReasonOtherEpoch, nil
	}
	if c.Stream != f.tag || (!f.session && c.Session != 0) {
		return ReasonWrongSession, nil
	}
	positions := []uint64{c.Broadcast}
	if f.session {
		positions = []uint64{c.Session, c.Broadcast}
	}
	floors := make([]uint64, len(f.parts))
	for i, p := range f.parts {
		var reason string
		reason, floors[i], err = f.checkResume(ctx, p.name, positions[i])
		if err != nil || reason != "" {
			return reason, err
		}
	}
	for i, p := range f.parts {
		p.pos, p.floor = positions[i], floors[i]
	}
	return "", nil
}

// checkResume decides whether a partition can be resumed exactly after pos.
// Missing numbers right after pos are holes like any other, however many
// (a burst of writers in flight); only expiry means lost history.
func (f *Follower) checkResume(ctx context.Context, partition string, pos uint64) (reason string, floor uint64, err error) {
	head, err := f.st.Head(ctx, partition)
	if err != nil {
		return "", 0, fmt.Errorf("read head of %s: %w", partition, err)
	}
	switch {
	case pos > head.Seq:
		return ReasonAhead, 0, nil
	case pos == head.Seq:
		return "", head.Floor, nil
	}
	next, err := f.st.Read(ctx, partition, pos, 1)
	if err != nil {
		return "", 0, fmt.Errorf("read %s after %d: %w", partition, pos, err)
	}
	if len(next) == 0 {
		// Nothing retained after pos, yet numbers were taken: lost to expiry
		// unless they are writers still in flight.
		if head.TakenAt.Before(f.opts.Now().Add(-f.opts.Retention)) {
			return ReasonBehind, 0, nil
		}
		return "", head.Floor, nil
	}
	if next[0].Expired {
		return ReasonBehind, 0, nil
	}
	return "", head.Floor, nil
}

// fresh positions each partition at its head, settled so that no writer in
// flight below it is skipped, and picks the replay from what it read.
func (f *Follower) fresh(ctx context.Context) ([]Delivery, error) {
	lists := make([][]message.Message, len(f.parts))
	seqs := make([][]uint64, len(f.parts))
	for i, p := range f.parts {
		entries, head, err := f.settle(ctx, p.name)
		if err != nil {
			return nil, err
		}
		p.pos, p.floor = head.Seq, head.Floor
		p.holeTop, p.wakeAt = 0, time.Time{}
		for _, e := range entries {
			lists[i] = append(lists[i], e.Message)
			seqs[i] = append(seqs[i], e.Seq)
		}
	}
	merged := mergeByTime(lists)
	if n := f.opts.ReplayCount; len(merged) > n {
		merged = merged[len(merged)-n:]
	}
	// Each replayed event carries the cursor after itself: before the
	// first, a partition stands just below its first replayed message (or
	// at its head when it replays none), so resuming from the k-th event
	// yields exactly the rest.
	pos := make([]uint64, len(f.parts))
	for i, p := range f.parts {
		pos[i] = p.pos
	}
	for j := len(merged) - 1; j >= 0; j-- {
		m := merged[j]
		pos[m.part] = seqs[m.part][m.index] - 1
	}
	f.start = f.cursorAt(pos)
	out := make([]Delivery, len(merged))
	for j, m := range merged {
		pos[m.part] = seqs[m.part][m.index]
		out[j] = Delivery{Message: m.msg, Cursor: f.cursorAt(pos)}
	}
	if len(out) > 0 {
		out[len(out)-1].Cursor = f.Cursor() // past any tombstones above the last
	}
	return out, nil
}

// Start is the cursor before the replay, which the connected event
// carries: resuming from it yields the replay again, then what followed. A
// resumed follower starts at its cursor.
func (f *Follower) Start() cursor.Cursor { return f.start }

// settle reads partition downward from its head until an entry older than
// any writer in flight, or its floor, and until it has ReplayCount messages
// or the bottom. Every missing number above that point is waited for up to
// HoleTimeout (at once closed when no writer can still fill it) and then
// tombstoned. It returns the deliverable entries it read, in order, and the
// head the partition is settled up to.
func (f *Follower) settle(ctx context.Context, partition string) ([]store.Entry, store.Head, error) {
	head, err := f.st.Head(ctx, partition)
	if err != nil {
		return nil, store.Head{}, fmt.Errorf("read head of %s: %w", partition, err)
	}
	firstSeen := f.opts.Now()
	var got []store.Entry // descending while reading
	var missing []uint64  // descending
	stop := head.Floor    // numbers at or below it need no settling
	settled := head.Seq <= stop
	messages := 0
	below := head.Seq + 1
	for !(settled && messages >= f.opts.ReplayCount) && below > 1 {
		page, err := f.st.ReadBefore(ctx, partition, below, readBatch)
		if err != nil {
			return nil, store.Head{}, fmt.Errorf("read %s below %d: %w", partition, below, err)
		}
		for _, e := range page {
			if !settled {
				for n := below - 1; n > e.Seq && n > stop; n-- {
					missing = append(missing, n)
				}
				if e.Seq <= stop || f.stale(firstSeen, &e, head) {
					settled, stop = true, max(stop, e.Seq)
				}
			}
			below = e.Seq
			got = append(got, e)
			if deliverable(e) {
				messages++
			}
			if settled && messages >= f.opts.ReplayCount {
				break
			}
		}
		if len(page) < readBatch {
			if !settled {
				for n := below - 1; n > stop; n-- {
					missing = append(missing, n)
				}
				settled = true
			}
			break
		}
	}
	slices.Reverse(got)
	slices.Reverse(missing)
	got, err = f.closeMissing(ctx, partition, head, got, missing, firstSeen)
	if err != nil {
		return nil, store.Head{}, err
	}
	return slices.DeleteFunc(got, func(e store.Entry) bool { return !deliverable(e) }), head, nil
}

// closeMissing waits for the missing numbers (ascending) until each is
// written or may be closed, closes them, and returns got (ascending) with
// what they turned out to hold.
func (f *Follower) closeMissing(ctx context.Context, partition string, head store.Head, got []store.Entry, missing []uint64, firstSeen time.Time) ([]store.Entry, error) {
	for len(missing) > 0 {
		now := f.opts.Now()
		waited := now.Sub(firstSeen) >= f.opts.HoleTimeout
		var still []uint64
		for _, seq := range missing {
			i, _ := slices.BinarySearchFunc(got, seq, func(e store.Entry, s uint64) int { return cmpSeq(e.Seq, s) })
			var above *store.Entry
			if i < len(got) {
				above = &got[i]
			}
			if !waited && !f.stale(now, above, head) {
				still = append(still, seq)
				continue
			}
			e, err := f.st.Tombstone(ctx, partition, seq)
			if err != nil {
				return nil, fmt.Errorf("close hole %s/%d: %w", partition, seq, err)
			}
			e.Seq = seq // a floor answer settles this number all the same
			got = slices.Insert(got, i, e)
		}
		missing = still
		if len(missing) == 0 {
			break
		}
		if err := f.sleep(ctx, partition, missing[0], settlePoll); err != nil {
			return nil, err
		}
		// Re-read the unsettled range: writers arrive meanwhile.
		lo := missing[0] - 1
		fresh, err := f.st.Read(ctx, partition, lo, int(missing[len(missing)-1]-lo))
		if err != nil {
			return nil, fmt.Errorf("read %s after %d: %w", partition, lo, err)
		}
		for _, e := range fresh {
			if j, found := slices.BinarySearch(missing, e.Seq); found {
				missing = slices.Delete(missing, j, j+1)
				i, _ := slices.BinarySearchFunc(got, e.Seq, func(g store.Entry, s uint64) int { return cmpSeq(g.Seq, s) })
				got = slices.Insert(got, i, e)
			}
		}
	}
	return got, nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func deliverable(e store.Entry) bool { return !e.Tombstone && !e.Expired && e.CloseStream == "" }

// HolesClosed is how many missing numbers this follower's reads closed with
// a tombstone (reads it made for its hub's other followers included).
func (f *Follower) HolesClosed() int {
	n := 0
	for _, p := range f.parts {
		n += p.holes
	}
	return n
}

// Closed reports whether a Poll passed a close signal for this stream
// (store.Entry.CloseStream): the stream should end.
func (f *Follower) Closed() bool { return f.closed }

// stale reports whether a missing number cannot belong to a writer in flight:
// the entry written above it, or the last number taken, is older than any
// writer stays in flight (store.StaleAge).
func (f *reader) stale(now time.Time, above *store.Entry, head store.Head) bool {
	limit := now.Add(-store.StaleAge).UnixMilli()
	if above != nil {
		return above.Message.Timestamp != 0 && above.Message.Timestamp < limit
	}
	return head.TakenAt.UnixMilli() < limit
}

func (f *reader) sleep(ctx context.Context, partition string, hole uint64, d time.Duration) error {
	var filled <-chan struct{}
	if f.notifier != nil {
		filled = f.notifier.Filled(partition, hole)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-filled:
	case <-t.C:
	}
	return nil
}

// Poll reads each followed partition once and returns the messages that
// became deliverable, merged by timestamp (each partition in sequence order),
// each with the cursor after it. On a store error it returns what it had
// delivered before the error, and the error; the follower's state stays
// consistent, so the caller just polls again later.
func (f *Follower) Poll(ctx context.Context) ([]Delivery, error) {
	// At most two partitions: fixed arrays keep these off the heap.
	var listsA [2][]message.Message
	var seqsA [2][]uint64
	var startA [2]uint64
	lists, seqs, start := listsA[:len(f.parts)], seqsA[:len(f.parts)], startA[:len(f.parts)]
	var errs []error
	for i, p := range f.parts {
		start[i] = p.pos
		msgs, ss, err := f.pollOne(ctx, p)
		lists[i], seqs[i] = msgs, ss
		if err != nil {
			errs = append(errs, err)
		}
	}
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	if len(errs) == 0 && total == 0 {
		return nil, nil // the common wake-up: nothing new here
	}
	defer func() {
		for i, p := range f.parts { // drop the references, keep the room
			clear(lists[i])
			p.msgs, p.seqs = lists[i][:0], seqs[i][:0]
		}
	}()
	pos := start
	if one := onlyNonEmpty(lists); one >= 0 {
		// News in one partition, the usual case: in its order, no merge.
		out := make([]Delivery, len(lists[one]))
		for j, m := range lists[one] {
			pos[one] = seqs[one][j]
			out[j] = Delivery{Message: m, Cursor: f.cursorAt(pos)}
		}
		return out, errors.Join(errs...)
	}
	merged := mergeByTime(lists)
	out := make([]Delivery, 0, len(merged))
	for _, m := range merged {
		pos[m.part] = seqs[m.part][m.index]
		out = append(out, Delivery{Message: m.msg, Cursor: f.cursorAt(pos)})
	}
	return out, errors.Join(errs...)
}

// onlyNonEmpty is the index of the one non-empty list, or -1 when none or
// several are.
func onlyNonEmpty(lists [][]message.Message) int {
	one := -1
	for i, l := range lists {
		if len(l) == 0 {
			continue
		}
		if one >= 0 {
			return -1
		}
		one = i
	}
	return one
}

func (f *Follower) pollOne(ctx context.Context, p *follow) ([]message.Message, []uint64, error) {
	msgs, seqs := p.msgs[:0], p.seqs[:0]
	take := func(e store.Entry) {
		if deliverable(e) {
			msgs = append(msgs, e.Message)
			seqs = append(seqs, e.Seq)
		}
		if e.CloseStream != "" && e.CloseStream == f.opts.ConnectionID {
			f.closed = true
		}
		p.pos = max(p.pos, e.Seq)
	}
	if p.feed != nil {
		entries, upTo, ok, err := p.feed.since(ctx, p)
		p.viaFeed = ok
		if ok {
			for i := range entries {
				take(entries[i].Entry)
			}
			p.pos = max(p.pos, upTo)
			return msgs, seqs, err
		}
		// Behind the feed's window (a resume from further back, or a
		// stream that fell behind): it catches up reading by itself.
	}
	err := f.advance(ctx, p, take)
	return msgs, seqs, err
}

// advance reads partition p after its position once and passes every entry
// it settles to take, in order, closing holes whose wait is over. p's
// position ends at the last settled number.
func (f *reader) advance(ctx context.Context, p *follow, take func(store.Entry)) error {
	if f.notifier != nil {
		p.changed = f.notifier.Changed(p.name)
	}
	entries, err := f.st.Read(ctx, p.name, p.pos, readBatch)
	if err != nil {
		return fmt.Errorf("read %s after %d: %w", p.name, p.pos, err)
	}
	p.wakeAt = time.Time{}
	step := func(e store.Entry) {
		take(e)
		p.pos = max(p.pos, e.Seq)
	}
	i := 0
	for i < len(entries) {
		e := entries[i]
		if e.Seq <= p.pos {
			i++
			continue
		}
		if e.Seq == p.pos+1 {
			step(e)
			i++
			continue
		}
		// A gap pos+1..e.Seq-1 below e. Numbers at or below the floor
		// cannot be written any more: pass them without a write.
		if p.pos < p.floor {
			p.pos = min(p.floor, e.Seq-1)
			continue
		}
		now := f.opts.Now()
		if p.holeTop < p.pos+1 {
			p.holeTop, p.holeSince = e.Seq-1, now // a new gap
		}
		deadline := p.holeSince.Add(f.opts.HoleTimeout)
		if f.stale(now, &e, store.Head{}) {
			deadline = now
		}
		if now.Before(deadline) {
			p.wakeAt = deadline
			break
		}
		// The wait is over for the whole gap seen then: close it in one go.
		for p.pos+1 < e.Seq {
			closed, err := f.st.Tombstone(ctx, p.name, p.pos+1)
			if err != nil {
				return fmt.Errorf("close hole %s/%d: %w", p.name, p.pos+1, err)
			}
			if closed.Seq < p.pos+1 {
				closed.Seq = p.pos + 1
			}
			if closed.Tombstone {
				p.holes++
			}
			step(closed)
		}
	}
	// A full batch means more is waiting, unless a hole stopped it: then the
	// hole's deadline or its filling wakes the stream, not a busy loop.
	p.more = len(entries) == readBatch && p.wakeAt.IsZero()
	return nil
}

// Next says when to poll again.
func (f *Follower) Next() Wake {
	w := Wake{After: f.opts.PollInterval}
	if f.notifier != nil {
		// Notified stores need no polling; the interval only bounds a
		// missed wake-up.
		w.After = max(f.opts.PollInterval, time.Second)
	}
	for i, p := range f.parts {
		if p.viaFeed {
			// The feed said what to wait for: its changes, and its next read.
			w.C[i] = p.changed
			if p.more {
				w.After = 0
			}
			if !p.wakeAt.IsZero() {
				w.After = min(w.After, max(p.wakeAt.Sub(f.opts.Now()), 0))
			}
			continue
		}
		if f.notifier != nil {
			w.C[i] = p.changed
			if !p.wakeAt.IsZero() {
				w.C[i] = f.notifier.Filled(p.name, p.pos+1)
			}
		}
		if p.more {
			w.After = 0
		}
		if !p.wakeAt.IsZero() {
			w.After = min(w.After, max(p.wakeAt.Sub(f.opts.Now()), 0))
		}
	}
	return w
}

type tagged struct {
	msg   message.Message
	part  int
	index int
}

// mergeByTime merges lists that are each in sequence order into one, by
// timestamp, never reordering within a list.
func mergeByTime(lists [][]message.Message) []tagged {
	n, nonEmpty := 0, -1
	for i, l := range lists {
		n += len(l)
		if len(l) > 0 {
			nonEmpty = i
		}
	}
	out := make([]tagged, 0, n)
	if n == len(lists[max(nonEmpty, 0)]) {
		// One list holds everything: nothing to merge.
		for i, m := range lists[max(nonEmpty, 0)] {
			out = append(out, tagged{msg: m, part: nonEmpty, index: i})
		}
		return out
	}
	idx := make([]int, len(lists))
	for len(out) < n {
		best := -1
		for i, l := range lists {
			if idx[i] >= len(l) {
				continue
			}
			if best < 0 || l[idx[i]].Timestamp < lists[best][idx[best]].Timestamp {
				best = i
			}
		}
		out = append(out, tagged{msg: lists[best][idx[best]], part: best, index: idx[best]})
		idx[best]++
	}
	return out
}
