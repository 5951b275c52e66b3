package tail

import (
	"context"
	"sync"
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

// feed is one partition's shared reading.
type feed struct {
	reader
	refs int // guarded by Hub.mu

	mu       sync.Mutex
	p        follow    // the feed's own position and hole state
	win      []settled // settled entries above winFrom, in order
	winFrom  uint64    // entries at or below it may be gone from win
	lastRead time.Time // when the last read began; zero before the first
	err      error     // the last read's
	// pub is closed when a read moved the feed (stores that cannot notify:
	// the followers that did not read wake for it).
	pub chan struct{}
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
		fd = &feed{reader: r, p: follow{name: p.name, pos: p.pos, floor: p.floor}, winFrom: p.pos, pub: make(chan struct{})}
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
// they take it to, reading the partition first when the window may be
// stale. It sets what p waits for next (p.changed, p.wakeAt, p.more). ok
// is false when p is below the window: p then reads by itself.
//
// The entries are the window itself, not a copy: a window's entries are
// never changed once appended (a trim makes a new array), so the caller
// reads them after the lock is released.
func (fd *feed) since(ctx context.Context, p *follow) (entries []settled, upTo uint64, ok bool, err error) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	if p.pos < fd.winFrom {
		return nil, 0, false, nil
	}
	now := fd.opts.Now()
	if !fd.current(now) {
		holes := fd.p.holes
		fd.read(ctx, now)
		p.holes += fd.p.holes - holes // the reader's, as if alone
	}
	i := len(fd.win)
	for i > 0 && fd.win[i-1].Seq > p.pos {
		i--
	}
	if i < len(fd.win) && fd.win[i].readAt.Before(now.Add(-feedMaxAge)) {
		return nil, 0, false, nil // read too long ago to be served as is
	}
	fd.waitFor(p)
	return fd.win[i:len(fd.win):len(fd.win)], max(p.pos, fd.p.pos), true, fd.err
}

// current reports whether the window holds what the store holds, as far as
// a follower can know without reading. Callers hold fd.mu.
func (fd *feed) current(now time.Time) bool {
	switch {
	case fd.lastRead.IsZero(), fd.p.more:
		return false
	case !fd.p.wakeAt.IsZero():
		// A hole: its deadline, or its filling, calls for a read.
		if !now.Before(fd.p.wakeAt) {
			return false
		}
		return fd.notifier == nil || !isClosed(fd.notifier.Filled(fd.p.name, fd.p.pos+1))
	case fd.notifier != nil:
		return !isClosed(fd.p.changed)
	}
	return now.Before(fd.lastRead.Add(fd.opts.PollInterval))
}

// read advances the feed once, for all its followers. Callers hold fd.mu.
func (fd *feed) read(ctx context.Context, now time.Time) {
	fd.lastRead = now
	before := fd.p.pos
	fd.err = fd.advance(ctx, &fd.p, func(e store.Entry) {
		fd.win = append(fd.win, settled{e, now})
	})
	if len(fd.win) > 2*feedWindow {
		drop := len(fd.win) - feedWindow
		fd.winFrom = fd.win[drop-1].Seq
		fd.win = append(fd.win[:0:0], fd.win[drop:]...)
	}
	if fd.p.pos != before {
		close(fd.pub)
		fd.pub = make(chan struct{})
	}
}

// waitFor tells p what to wait for before it polls again: for a store that
// notifies, the change channel taken before the feed's last read (or the
// filling of its hole); else the feed's next read, or another follower's
// read that moves the feed. Callers hold fd.mu.
func (fd *feed) waitFor(p *follow) {
	p.more = fd.p.more
	p.wakeAt = fd.p.wakeAt
	if fd.notifier != nil {
		p.changed = fd.p.changed
		if !fd.p.wakeAt.IsZero() {
			p.changed = fd.notifier.Filled(fd.p.name, fd.p.pos+1)
		}
		return
	}
	p.changed = fd.pub
	next := fd.lastRead.Add(fd.opts.PollInterval)
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
