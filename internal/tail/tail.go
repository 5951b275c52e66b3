// Package tail follows a stream's partitions in a store: it positions a new
// stream (fresh, or resumed from a cursor), replays recent messages, and
// delivers each later message exactly once, in sequence order per partition.
//
// Writers take a sequence number and then write it, so a reader can see n+1
// before n. A Follower never passes a number it has neither seen nor
// tombstoned: it waits up to HoleTimeout for a missing number, then closes it
// with a conditional tombstone; a writer that comes later finds its slot
// taken and fails, so its sender retries (DESIGN.md section 4).
package tail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// Store is what a Follower reads and writes.
type Store interface {
	Epoch(ctx context.Context) (int64, error)
	Head(ctx context.Context, partition string) (store.Head, error)
	Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error)
	Tombstone(ctx context.Context, partition string, seq uint64) (store.Entry, error)
}

// Notifier is implemented by stores that can wake readers at once on a write.
type Notifier interface {
	Changed(partition string) <-chan struct{}
}

// Options tune a Follower. Zero durations take the defaults of DESIGN.md.
type Options struct {
	HoleTimeout  time.Duration    // wait for a missing number; default 2s
	PollInterval time.Duration    // between reads when the store cannot notify; default 1s
	ReplayCount  int              // recent messages for a fresh stream
	Retention    time.Duration    // message TTL; default 24h
	Now          func() time.Time // clock for expiry decisions; default time.Now
}

const (
	// readBatch bounds one read; a full batch means more is waiting.
	readBatch = 100
	// settleWindow is how many numbers below the head a fresh stream settles
	// (sees, or tombstones) before it starts there.
	settleWindow = 64
	// maxResumeGap is the largest run of missing numbers right after a cursor
	// that is treated as holes rather than as lost history.
	maxResumeGap = 256
	// staleAge is longer than any writer stays between taking a number and
	// writing it (ingest bounds an append to 10s). A hole next to an entry
	// this old cannot be a writer in flight, so it is closed without waiting.
	staleAge = 30 * time.Second
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
	st       Store
	notifier Notifier
	opts     Options
	epoch    int64
	parts    []*follow // session first when present, broadcast last
	session  bool
}

type follow struct {
	name      string
	pos       uint64
	hole      uint64 // number being waited for; 0 when none
	holeSince time.Time
	wakeAt    time.Time // hole deadline, zero when none
	more      bool
	changed   <-chan struct{} // taken before the last read, so no write is missed
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
// replay: the ReplayCount most recent messages across both partitions, oldest
// first. A resumed follower returns no replay: its first Poll catches up.
func Open(ctx context.Context, st Store, opts Options, sessionID, lastEventID string) (f *Follower, replay []Delivery, reset string, err error) {
	if opts.HoleTimeout <= 0 {
		opts.HoleTimeout = 2 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	epoch, err := st.Epoch(ctx)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read store epoch: %w", err)
	}
	f = &Follower{st: st, opts: opts, epoch: epoch, session: sessionID != ""}
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
			return f, nil, "", nil
		}
	}
	replay, err = f.fresh(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	return f, replay, reset, nil
}

// Cursor is the stream's position: every number at or below it in each
// partition has been delivered or skipped.
func (f *Follower) Cursor() cursor.Cursor {
	c := cursor.Cursor{Epoch: f.epoch}
	if f.session {
		c.Session = f.parts[0].pos
	}
	c.Broadcast = f.parts[len(f.parts)-1].pos
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
	positions := []uint64{c.Broadcast}
	if f.session {
		positions = []uint64{c.Session, c.Broadcast}
	}
	for i, p := range f.parts {
		reason, err := f.checkResume(ctx, p.name, positions[i])
		if err != nil || reason != "" {
			return reason, err
		}
	}
	for i, p := range f.parts {
		p.pos = positions[i]
	}
	return "", nil
}

// checkResume decides whether a partition can be resumed exactly after pos.
func (f *Follower) checkResume(ctx context.Context, partition string, pos uint64) (string, error) {
	head, err := f.st.Head(ctx, partition)
	if err != nil {
		return "", fmt.Errorf("read head of %s: %w", partition, err)
	}
	switch {
	case pos > head.Seq:
		return ReasonAhead, nil
	case pos == head.Seq:
		return "", nil
	}
	next, err := f.st.Read(ctx, partition, pos, 1)
	if err != nil {
		return "", fmt.Errorf("read %s after %d: %w", partition, pos, err)
	}
	now := f.opts.Now()
	if len(next) == 0 {
		// Nothing retained after pos, yet numbers were taken: lost to expiry
		// unless they are writers still in flight.
		if head.TakenAt.Before(now.Add(-f.opts.Retention)) || head.Seq-pos > maxResumeGap {
			return ReasonBehind, nil
		}
		return "", nil
	}
	if next[0].Expired || next[0].Seq-pos-1 > maxResumeGap {
		return ReasonBehind, nil
	}
	return "", nil
}

// fresh settles every number of the last settleWindow below each head, so
// that the stream can start at the heads without skipping a writer in
// flight, and picks the replay from what it read.
func (f *Follower) fresh(ctx context.Context) ([]Delivery, error) {
	window := max(settleWindow, f.opts.ReplayCount)
	var candidates [][]message.Message
	for _, p := range f.parts {
		msgs, head, err := f.settle(ctx, p.name, window)
		if err != nil {
			return nil, err
		}
		p.pos = head
		p.hole, p.wakeAt = 0, time.Time{}
		candidates = append(candidates, msgs)
	}
	merged := mergeByTime(candidates)
	if n := f.opts.ReplayCount; len(merged) > n {
		merged = merged[len(merged)-n:]
	}
	c := f.Cursor()
	out := make([]Delivery, len(merged))
	for i, m := range merged {
		out[i] = Delivery{Message: m.msg, Cursor: c}
	}
	return out, nil
}

// settle reads the window below partition's head until every number in it is
// present or tombstoned; it returns the window's deliverable messages in
// sequence order, and the head.
func (f *Follower) settle(ctx context.Context, partition string, window int) ([]message.Message, uint64, error) {
	head, err := f.st.Head(ctx, partition)
	if err != nil {
		return nil, 0, fmt.Errorf("read head of %s: %w", partition, err)
	}
	lo := head.Seq - min(head.Seq, uint64(window))
	firstSeen := f.opts.Now()
	for {
		entries, err := f.st.Read(ctx, partition, lo, window)
		if err != nil {
			return nil, 0, fmt.Errorf("read %s after %d: %w", partition, lo, err)
		}
		entries = slices.DeleteFunc(entries, func(e store.Entry) bool { return e.Seq > head.Seq })
		now := f.opts.Now()
		waiting := false
		next := len(entries) // index of the first entry above the number checked
		for seq := head.Seq; seq > lo; seq-- {
			for next > 0 && entries[next-1].Seq >= seq {
				next--
			}
			if next < len(entries) && entries[next].Seq == seq {
				continue
			}
			var above *store.Entry
			if next < len(entries) {
				above = &entries[next]
			}
			if !f.stale(now, above, head) && now.Sub(firstSeen) < f.opts.HoleTimeout {
				waiting = true
				continue
			}
			e, err := f.st.Tombstone(ctx, partition, seq)
			if err != nil {
				return nil, 0, fmt.Errorf("close hole %s/%d: %w", partition, seq, err)
			}
			entries = slices.Insert(entries, next, e)
		}
		if !waiting {
			var msgs []message.Message
			for _, e := range entries {
				if !e.Tombstone && !e.Expired {
					msgs = append(msgs, e.Message)
				}
			}
			return msgs, head.Seq, nil
		}
		if err := f.sleep(ctx, partition, settlePoll); err != nil {
			return nil, 0, err
		}
	}
}

// stale reports whether a missing number cannot belong to a writer in flight:
// the entry written above it, or the last number taken, is older than any
// writer stays in flight.
func (f *Follower) stale(now time.Time, above *store.Entry, head store.Head) bool {
	limit := now.Add(-staleAge).UnixMilli()
	if above != nil {
		return above.Message.Timestamp != 0 && above.Message.Timestamp < limit
	}
	return head.TakenAt.UnixMilli() < limit
}

func (f *Follower) sleep(ctx context.Context, partition string, d time.Duration) error {
	var changed <-chan struct{}
	if f.notifier != nil {
		changed = f.notifier.Changed(partition)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
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
	if len(errs) == 0 && len(lists) == 2 && len(lists[0])+len(lists[1]) == 0 {
		return nil, nil // the common wake-up: nothing new here
	}
	merged := mergeByTime(lists)
	out := make([]Delivery, 0, len(merged))
	pos := start
	for _, m := range merged {
		pos[m.part] = seqs[m.part][m.index]
		c := cursor.Cursor{Epoch: f.epoch, Broadcast: pos[len(pos)-1]}
		if f.session {
			c.Session = pos[0]
		}
		out = append(out, Delivery{Message: m.msg, Cursor: c})
	}
	return out, errors.Join(errs...)
}

func (f *Follower) pollOne(ctx context.Context, p *follow) ([]message.Message, []uint64, error) {
	if f.notifier != nil {
		p.changed = f.notifier.Changed(p.name)
	}
	entries, err := f.st.Read(ctx, p.name, p.pos, readBatch)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s after %d: %w", p.name, p.pos, err)
	}
	p.more = len(entries) == readBatch
	p.wakeAt = time.Time{}
	msgs := make([]message.Message, 0, len(entries))
	seqs := make([]uint64, 0, len(entries))
	take := func(e store.Entry) {
		if !e.Tombstone && !e.Expired {
			msgs = append(msgs, e.Message)
			seqs = append(seqs, e.Seq)
		}
		p.pos = e.Seq
		p.hole = 0
	}
	i := 0
	for i < len(entries) {
		e := entries[i]
		if e.Seq <= p.pos {
			i++
			continue
		}
		if e.Seq == p.pos+1 {
			take(e)
			i++
			continue
		}
		// A hole at pos+1, with e written above it.
		now := f.opts.Now()
		if p.hole != p.pos+1 {
			p.hole, p.holeSince = p.pos+1, now
		}
		deadline := p.holeSince.Add(f.opts.HoleTimeout)
		if f.stale(now, &e, store.Head{}) {
			deadline = now
		}
		if now.Before(deadline) {
			p.wakeAt = deadline
			break
		}
		closed, err := f.st.Tombstone(ctx, p.name, p.hole)
		if err != nil {
			return msgs, seqs, fmt.Errorf("close hole %s/%d: %w", p.name, p.hole, err)
		}
		take(closed)
	}
	return msgs, seqs, nil
}

// Next says when to poll again.
func (f *Follower) Next() Wake {
	w := Wake{After: f.opts.PollInterval}
	if f.notifier != nil {
		// Notified stores need no polling; the interval only bounds a
		// missed wake-up.
		w.After = max(f.opts.PollInterval, time.Second)
		for i, p := range f.parts {
			w.C[i] = p.changed
		}
	}
	for _, p := range f.parts {
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
