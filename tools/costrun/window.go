package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/sse"
)

// The two ways a window can behave.
const (
	// modeBefore: close and pause off. A closed window drops its TCP
	// connection and nothing else (on AWS the invocation runs on to its
	// planned end); a hidden window stays connected; at a planned end the
	// window reconnects with Last-Event-ID while it is open, visible or not,
	// as EventSource does.
	modeBefore = "before"
	// modeAfter: a window that closes sends the close beacon and drops the
	// connection; one hidden longer than the grace closes its stream and
	// sends the beacon too, and reconnects with ?lastEventId= when it is
	// visible again.
	modeAfter = "after"
)

// span is a stretch of wall time.
type span struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// connRec is one stream request of a window, as the window saw it.
type connRec struct {
	Start     time.Time `json:"start"`
	Connected time.Time `json:"connected,omitzero"` // the connected event arrived
	End       time.Time `json:"end"`
	ID        string    `json:"id,omitempty"`     // its connectionId
	Resume    string    `json:"resume,omitempty"` // "header" (Last-Event-ID), "query" (?lastEventId=) or "" (fresh)
	Status    int       `json:"status,omitempty"`
	// Ended: "planned" (the body ended: the stream's planned end),
	// "dropped" (the window cut it) or "error".
	Ended string `json:"ended"`
	Err   string `json:"err,omitempty"`
}

// closeRec is one close beacon.
type closeRec struct {
	At      time.Time     `json:"at"`
	Status  int           `json:"status"`
	Latency time.Duration `json:"latency"`
	Err     string        `json:"err,omitempty"`
}

// windowResult is what one window did and got.
type windowResult struct {
	Index           int            `json:"index"`
	Class           string         `json:"class"`
	Opened          time.Time      `json:"opened"`
	Closed          time.Time      `json:"closed"`
	Visible         []span         `json:"visible"`
	HiddenPastGrace []span         `json:"hiddenPastGrace,omitempty"`
	Conns           []connRec      `json:"conns"`
	Closes          []closeRec     `json:"closes,omitempty"`
	ClosesWithoutID int            `json:"closesWithoutId,omitempty"` // left before its stream said its connectionId
	Sent            []string       `json:"sent"`                      // messageIds of the webhooks accepted for its session
	SendFailed      int            `json:"sendFailed,omitempty"`
	Received        map[string]int `json:"received"` // messageId -> times delivered
	Misrouted       int            `json:"misrouted,omitempty"`
	Resets          int            `json:"resets,omitempty"`
	Malformed       int            `json:"malformed,omitempty"`
}

// page runs windows against one relay.
type page struct {
	mode    string
	base    string // the relay's base URL
	s       Settings
	t0      time.Time // the start of the script
	slack   time.Duration
	streams *http.Client // one connection per stream, never reused
	posts   *http.Client
}

// window is one chat window while it runs.
type window struct {
	pg   *page
	plan plan

	connected     chan struct{} // closed at the first connected event
	connectedOnce sync.Once
	beacons       sync.WaitGroup

	mu     sync.Mutex // guards lastID and res
	lastID string
	res    windowResult
}

// conn is one open stream request of a window.
type conn struct {
	rec     connRec // written by read until done is closed
	cancel  context.CancelFunc
	done    chan struct{}
	dropped atomic.Bool
	id      atomic.Value // string: the connectionId, once known
}

func (c *conn) connectionID() string {
	id, _ := c.id.Load().(string)
	return id
}

func newWindow(pg *page, p plan) *window {
	return &window{pg: pg, plan: p, connected: make(chan struct{}),
		res: windowResult{Index: p.Index, Class: p.Class, Received: map[string]int{}, Sent: []string{}}}
}

// run plays the window's script: open, the visibility changes, close.
func (w *window) run(ctx context.Context) {
	pg := w.pg
	if !sleepUntil(ctx, pg.t0.Add(w.plan.Open)) {
		return
	}
	type transition struct {
		at      time.Time
		visible bool
		close   bool
	}
	var ts []transition
	at := pg.t0.Add(w.plan.Open)
	for i, ph := range w.plan.Phases {
		at = at.Add(ph.For)
		if i+1 < len(w.plan.Phases) {
			ts = append(ts, transition{at: at, visible: w.plan.Phases[i+1].Visible})
		} else {
			ts = append(ts, transition{at: at, close: true})
		}
	}
	grace := pg.s.wall(hideGrace)
	now := time.Now()
	w.res.Opened = now
	visible, since := w.plan.Phases[0].Visible, now
	endSpan := func(to time.Time) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if visible {
			w.res.Visible = append(w.res.Visible, span{since, to})
		} else if to.Sub(since) > grace {
			w.res.HiddenPastGrace = append(w.res.HiddenPastGrace, span{since.Add(grace), to})
		}
	}

	cur := w.connect(ctx, "")
	var graceC, retryC <-chan time.Time
	paused := false // after mode: the stream was closed for a hidden window
	next := 0
	timer := time.NewTimer(time.Until(ts[0].at))
	defer timer.Stop()
	for {
		var done <-chan struct{}
		if cur != nil {
			done = cur.done
		}
		select {
		case <-ctx.Done():
			if cur != nil {
				w.leave(cur, false)
			}
			return
		case <-timer.C:
			tr := ts[next]
			next++
			now := time.Now()
			endSpan(now)
			if tr.close {
				if cur != nil {
					w.leave(cur, pg.mode == modeAfter)
				}
				w.beacons.Wait()
				w.mu.Lock()
				w.res.Closed = now
				w.mu.Unlock()
				return
			}
			visible, since = tr.visible, now
			switch {
			case !visible && pg.mode == modeAfter:
				graceC = time.After(grace)
			case visible:
				graceC = nil
				if paused {
					paused = false
					cur = w.connect(ctx, "query")
				}
			}
			timer.Reset(time.Until(ts[next].at))
		case <-graceC:
			graceC, retryC, paused = nil, nil, true
			if cur != nil {
				w.leave(cur, true)
				cur = nil
			}
		case <-done:
			// A planned end (or a failure): EventSource reconnects after
			// the retry: delay, with Last-Event-ID, while the window is open.
			w.record(cur)
			cur = nil
			retryC = time.After(pg.s.retryWall())
		case <-retryC:
			retryC = nil
			cur = w.connect(ctx, "header")
		}
	}
}

// leave drops a stream: with beacon it sends the close beacon for it, as
// the chat page does on pagehide or after the grace (navigator.sendBeacon:
// first, and without waiting for the answer), then it cuts the TCP
// connection. A stream that has not said its connectionId yet cannot be
// named: it runs on to its planned end, as it would for the page.
func (w *window) leave(c *conn, beacon bool) {
	if id := c.connectionID(); beacon && id != "" {
		w.beacons.Go(func() { w.beacon(id) })
	} else if beacon {
		w.mu.Lock()
		w.res.ClosesWithoutID++
		w.mu.Unlock()
	}
	c.dropped.Store(true)
	c.cancel()
	<-c.done
	w.record(c)
}

func (w *window) record(c *conn) {
	w.mu.Lock()
	w.res.Conns = append(w.res.Conns, c.rec)
	w.mu.Unlock()
}

// connect opens a stream request: fresh, or resumed from the last cursor
// in the Last-Event-ID header (EventSource) or in ?lastEventId= (a new
// EventSource opened by the page).
func (w *window) connect(ctx context.Context, resume string) *conn {
	w.mu.Lock()
	last := w.lastID
	w.mu.Unlock()
	if last == "" {
		resume = ""
	}
	q := url.Values{"sessionId": {w.plan.Session}}
	if resume == "query" {
		q.Set("lastEventId", last)
	}
	cctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, w.pg.base+"/api/webhook/stream?"+q.Encode(), nil)
	req.Header.Set("Accept", "text/event-stream")
	if resume == "header" {
		req.Header.Set("Last-Event-ID", last)
	}
	c := &conn{cancel: cancel, done: make(chan struct{}), rec: connRec{Start: time.Now(), Resume: resume}}
	go w.read(c, req)
	return c
}

// read follows one stream until it ends or is dropped.
func (w *window) read(c *conn, req *http.Request) {
	defer close(c.done)
	end := func(err error) {
		c.rec.End = time.Now()
		switch {
		case c.dropped.Load():
			c.rec.Ended = "dropped"
		case errors.Is(err, io.EOF):
			c.rec.Ended = "planned"
		default:
			c.rec.Ended = "error"
			c.rec.Err = err.Error()
		}
	}
	resp, err := w.pg.streams.Do(req)
	if err != nil {
		end(err)
		return
	}
	defer resp.Body.Close()
	c.rec.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		end(errors.New("status " + resp.Status + ": " + strings.TrimSpace(string(b))))
		return
	}
	rd := sse.NewReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			end(err)
			return
		}
		w.event(c, ev)
	}
}

// streamEvent is the data of the stream's events, all types together.
type streamEvent struct {
	Type         string  `json:"type"`
	ConnectionID string  `json:"connectionId"`
	ID           string  `json:"id"`
	SessionID    *string `json:"sessionId"`
}

func (w *window) event(c *conn, ev sse.Event) {
	var e streamEvent
	err := json.Unmarshal([]byte(ev.Data), &e)
	w.mu.Lock()
	defer w.mu.Unlock()
	if ev.ID != "" {
		w.lastID = ev.ID
	}
	switch {
	case err != nil:
		w.res.Malformed++
	case e.Type == "connected":
		c.rec.Connected, c.rec.ID = time.Now(), e.ConnectionID
		c.id.Store(e.ConnectionID)
		w.connectedOnce.Do(func() { close(w.connected) })
	case e.Type == "webhook_message":
		w.res.Received[e.ID]++
		if e.SessionID == nil || *e.SessionID != w.plan.Session {
			w.res.Misrouted++
		}
	case e.Type == "reset":
		w.res.Resets++
	default:
		w.res.Malformed++
	}
}

// beacon sends POST <base>/api/webhook/stream/close?connectionId=<id>, as
// navigator.sendBeacon does (text/plain, a body the relay ignores).
func (w *window) beacon(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := w.pg.base + "/api/webhook/stream/close?" + url.Values{"connectionId": {id}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(""))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	rec := closeRec{At: time.Now()}
	resp, err := w.pg.posts.Do(req)
	rec.Latency = time.Since(rec.At)
	if err != nil {
		rec.Err = err.Error()
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rec.Status = resp.StatusCode
	}
	w.mu.Lock()
	w.res.Closes = append(w.res.Closes, rec)
	w.mu.Unlock()
}

// result is the window's record once it has run.
func (w *window) result() windowResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
