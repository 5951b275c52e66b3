package tail

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/store"
)

// Hub shares the reading of partitions among the followers of one process:
// k streams that follow broadcast make one read per poll, not k. It holds a
// feed per partition, made when the first follower needs it and dropped
// when the last leaves.
//
// A feed keeps a window of the entries it settled, in order. Each follower
// keeps its own position and takes the entries above it from the window;
// the first one to poll once the window may be stale reads the store for
// all (so holes are decided once per partition). A follower behind the
// window (resumed from further back, or slow) reads by itself until it
// reaches it, so it never holds back the others, and exactness is that of
// a follower alone. A Hub is safe for concurrent use.
type Hub struct {
	mu    sync.Mutex
	feeds map[string]*feed
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{feeds: make(map[string]*feed)} }

const (
	// feedWindow is how many settled entries a feed keeps at least.
	feedWindow = 512
	// feedMaxAge bounds how long a feed serves an entry it read: expiry was
	// decided at the read, and must not be served much later.
	feedMaxAge = store.StaleAge
)

// feed is one partition's shared reading. Followers take what it read from
// its current view without a lock; only the one that reads for all holds
// mu, and the others wait for its view instead of queueing on the lock (a
// thousand streams woken by one write would otherwise pass it on one by
// one).
type feed struct {
	reader
	refs int // guarded by Hub.mu

	mu  sync.Mutex // held while reading for all
	p   follow     // the feed's own position and hole state; guarded by mu
	win []settled  // settled entries above the view's winFrom; guarded by mu

	view atomic.Pointer[feedView]
	// reading is set while a read is in flight, until just before its view
	// is published: a follower that finds the lock taken and reading set
	// may wait for the view it holds to be replaced.
	reading atomic.Bool
}

// feedView is what the feed knew after a read. It never changes once
// published; replaced is closed when the next one is.
type feedView struct {
	win      []settled // settled entries above winFrom, in order
	winFrom  uint64    // entries at or below it may be gone from win
	pos      uint64    // the feed's position
	lastRead time.Time // when the read began; zero before the first
	err      error     // the read's
	more     bool      // a full batch: more is waiting
	wakeAt   time.Time // a hole's deadline, zero when none
	changed  <-chan struct{}
	replaced chan struct{}
}

type settled struct {
	store.Entry
	readAt time.Time
}

// acquire returns the feed of p's partition, made at p's position when it
// is the first.
func (h *Hub) acquire(r reader, p *follow) *feed {
	h.mu.Lock()
	defer h.mu.Unlock()
	fd := h.feeds[p.name]
	if fd == nil {
		fd = &feed{reader: r, p: follow{name: p.name, pos: p.pos, floor: p.floor}}
		fd.view.Store(&feedView{winFrom: p.pos, pos: p.pos, replaced: make(chan struct{})})
		h.feeds[p.name] = fd
	}
	fd.refs++
	return fd
}

func (h *Hub) release(fd *feed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fd.refs--; fd.refs == 0 {
		delete(h.feeds, fd.p.name)
	}
}

// Feeds reports how many partitions the hub reads for now.
func (h *Hub) Feeds() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.feeds)
}

// since returns the settled entries above p's position and the position
// they take it to, reading the partition first when the view may be stale
// (or waiting for the follower that reads). It sets what p waits for next
// (p.changed, p.wakeAt, p.more). ok is false when p is below the window: p
// then reads by itself.
//
// The entries are the window itself, not a copy: a window's entries are
// never changed once appended (a trim makes a new array).
func (fd *feed) since(ctx context.Context, p *follow) (entries []settled, upTo uint64, ok bool, err error) {
	v := fd.view.Load()
	for {
		if p.pos < v.winFrom {
			return nil, 0, false, nil
		}
		now := fd.opts.Now()
		if fd.current(v, now) {
			break
		}
		if fd.mu.TryLock() {
			if v = fd.view.Load(); !fd.current(v, now) { // unless a read just ended
				holes := fd.p.holes
				v = fd.read(ctx, now)
				p.holes += fd.p.holes - holes // the reader's, as if alone
			}
			fd.mu.Unlock()
			break
		}
		if fd.reading.Load() {
			// Another follower reads for all, and has not published yet:
			// the view held now is the one it replaces.
			select {
			case <-v.replaced:
			case <-ctx.Done():
				return nil, 0, true, ctx.Err()
			}
		} else {
			runtime.Gosched() // the lock is being taken or given back
		}
		v = fd.view.Load()
	}
	if p.pos < v.winFrom {
		return nil, 0, false, nil
	}
	i := len(v.win)
	for i > 0 && v.win[i-1].Seq > p.pos {
		i--
	}
	if i < len(v.win) && v.win[i].readAt.Before(fd.opts.Now().Add(-feedMaxAge)) {
		return nil, 0, false, nil // read too long ago to be served as is
	}
	fd.waitFor(v, p)
	return v.win[i:], max(p.pos, v.pos), true, v.err
}

// current reports whether v holds what the store holds, as far as a
// follower can know without reading.
func (fd *feed) current(v *feedView, now time.Time) bool {
	switch {
	case v.lastRead.IsZero(), v.more:
		return false
	case !v.wakeAt.IsZero():
		// A hole: its deadline, or its filling, calls for a read.
		if !now.Before(v.wakeAt) {
			return false
		}
		return fd.notifier == nil || !isClosed(v.changed)
	case fd.notifier != nil:
		return !isClosed(v.changed)
	}
	return now.Before(v.lastRead.Add(fd.opts.PollInterval))
}

// read advances the feed once, for all its followers, and publishes the
// view it makes. Callers hold fd.mu.
func (fd *feed) read(ctx context.Context, now time.Time) *feedView {
	old := fd.view.Load()
	fd.reading.Store(true)
	err := fd.advance(ctx, &fd.p, func(e store.Entry) {
		fd.win = append(fd.win, settled{e, now})
	})
	winFrom := old.winFrom
	if len(fd.win) > 2*feedWindow {
		drop := len(fd.win) - feedWindow
		winFrom = fd.win[drop-1].Seq
		fd.win = append(fd.win[:0:0], fd.win[drop:]...)
	}
	v := &feedView{win: fd.win[:len(fd.win):len(fd.win)], winFrom: winFrom, pos: fd.p.pos, lastRead: now, err: err,
		more: fd.p.more, wakeAt: fd.p.wakeAt, changed: fd.p.changed, replaced: make(chan struct{})}
	if fd.notifier != nil && !v.wakeAt.IsZero() {
		// Waiting on a hole: its filling, not every write above it.
		v.changed = fd.notifier.Filled(fd.p.name, fd.p.pos+1)
	}
	fd.reading.Store(false) // before the view: see since
	fd.view.Store(v)
	close(old.replaced)
	return v
}

// waitFor tells p what to wait for before it polls again: for a store that
// notifies, the change channel taken before the view's read (or the filling
// of its hole); else the feed's next read, or another follower's read.
func (fd *feed) waitFor(v *feedView, p *follow) {
	p.more = v.more
	p.wakeAt = v.wakeAt
	if fd.notifier != nil {
		p.changed = v.changed
		return
	}
	p.changed = v.replaced
	next := v.lastRead.Add(fd.opts.PollInterval)
	if p.wakeAt.IsZero() || next.Before(p.wakeAt) {
		p.wakeAt = next
	}
}

func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
