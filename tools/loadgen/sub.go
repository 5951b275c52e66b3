package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// A subscriber is one SSE client. It speaks HTTP/1.1 on a raw connection
// (one goroutine and two 4 KiB buffers per stream, so 10000 of them stay
// cheap), parses events as a browser does, and reconnects with the
// Last-Event-ID of the last event it dispatched, as EventSource does.
type subscriber struct {
	g         *gen
	idx       int
	session   int // -1: broadcast only
	sessionID string

	// Owned by the subscriber's goroutine until it ends.
	lastID      []byte
	retryMS     int
	seen        bitset
	lat         *hist
	received    uint64 // unique messages of this run that it should get
	dups        uint64
	misrouted   uint64
	corrupt     uint64
	foreign     uint64
	resets      uint64
	heartbeats  uint64
	reconnects  uint64 // connections after the first
	unplanned   uint64 // ends of a stream the client did not ask for
	connErrors  uint64
	lastRecv    int64     // unix nano of the last new delivery
	dupNs       []int64   // message numbers seen again (at most maxDupSamples)
	gaps        []beatGap // time from the stream's start to its first heartbeat, and between heartbeats
	phaseLat    []*hist   // delivery latency by the phase the message was first sent in (with a fault schedule)
	connectTime time.Duration
	connected   bool
	firstErr    string

	// planned is set when the client itself closes the connection.
	planned atomic.Bool
	// ready receives the outcome of the first connection, once.
	ready chan<- error
}

// maxDupSamples bounds the duplicates a subscriber remembers by number.
const maxDupSamples = 10000

// beatGap is a stretch of one connection without a heartbeat: from the
// response (or the previous heartbeat) to a heartbeat, in unix nanoseconds.
type beatGap struct{ from, to int64 }

// bitset records which message numbers a subscriber has seen.
type bitset []uint64

// set marks n and reports whether it was marked before.
func (b *bitset) set(n int64) bool {
	w := int(n >> 6)
	if w >= len(*b) {
		grown := make([]uint64, max(w+1, 2*len(*b)))
		copy(grown, *b)
		*b = grown
	}
	m := uint64(1) << (uint(n) & 63)
	old := (*b)[w]&m != 0
	(*b)[w] |= m
	return old
}

func (b bitset) has(n int64) bool {
	w := int(n >> 6)
	return w < len(b) && b[w]&(uint64(1)<<(uint(n)&63)) != 0
}

// run connects and reads until ctx ends, reconnecting as EventSource would.
func (s *subscriber) run(ctx context.Context, gate chan struct{}) {
	first := true
	defer func() {
		if first && s.ready != nil {
			s.ready <- errors.New("stopped before connecting")
		}
	}()
	backoff := 250 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if first {
			select { // bound concurrent connection set-up
			case gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		start := time.Now()
		conn, body, err := s.open(ctx)
		if err != nil {
			if first {
				<-gate
				first = false
				s.firstErr = err.Error()
				s.ready <- err
				return // a subscriber that never connected takes no part
			}
			s.connErrors++
			if s.firstErr == "" {
				s.firstErr = err.Error()
			}
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 3*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		if !first {
			s.reconnects++
		}
		s.planned.Store(false)
		var stopTimer func() bool
		if mean := s.g.cfg.ReconnectMean; mean > 0 && !s.g.stopReconnects.Load() {
			d := time.Duration(rand.ExpFloat64() * float64(mean))
			t := time.AfterFunc(d, func() {
				if s.g.stopReconnects.Load() {
					return
				}
				s.planned.Store(true)
				_ = conn.Close()
			})
			stopTimer = t.Stop
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		err = s.read(body, func() {
			if first {
				<-gate
				first = false
				s.connectTime = time.Since(start)
				s.connected = true
				s.ready <- nil
			}
		})
		stop()
		if stopTimer != nil {
			stopTimer()
		}
		_ = conn.Close()
		if first { // the connection ended before its connected event
			<-gate
			first = false
			if err == nil {
				err = errors.New("stream ended before the connected event")
			}
			s.firstErr = err.Error()
			s.ready <- err
			return
		}
		if ctx.Err() != nil {
			return
		}
		delay := time.Duration(rand.IntN(250)) * time.Millisecond
		if !s.planned.Load() {
			// The server ended the stream (planned end, shutdown) or it broke:
			// wait the retry: delay, as a browser does (capped at 3 s).
			s.unplanned++
			if s.firstErr == "" && err != nil && !errors.Is(err, io.EOF) {
				s.firstErr = "stream broke: " + err.Error()
			}
			delay = time.Duration(min(max(s.retryMS, 100), 3000)) * time.Millisecond
		}
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// open dials the server and sends the stream request; it returns the
// connection and the (de-chunked) response body.
func (s *subscriber) open(ctx context.Context) (net.Conn, io.Reader, error) {
	g := s.g
	dctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(dctx, "tcp", g.hostport)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(g.cfg.ConnectTimeout))
	var req bytes.Buffer
	target, err := g.wire.streamTarget(g.basePath, s.idx, s.sessionID)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	req.WriteString("GET ")
	req.WriteString(target)
	req.WriteString(" HTTP/1.1\r\nHost: ")
	req.WriteString(g.hostport)
	req.WriteString("\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: webhook-relay-loadgen\r\n")
	if len(s.lastID) > 0 {
		req.WriteString("Last-Event-ID: ")
		req.Write(s.lastID)
		req.WriteString("\r\n")
	}
	req.WriteString("\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		conn.Close()
		return nil, nil, fmt.Errorf("stream answered %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	// Reads block until an event or a heartbeat arrives; ctx (and the
	// generator's overall bound) closes the connection to end them.
	_ = conn.SetDeadline(time.Time{})
	return conn, resp.Body, nil
}

// read parses events from body until it ends; onConnected runs at the
// first connected event.
func (s *subscriber) read(body io.Reader, onConnected func()) error {
	lr := bufio.NewReaderSize(body, 4096)
	lastBeat := time.Now().UnixNano()
	var data, id, long []byte
	hasData := false
	for {
		line, err := lr.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = lr.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			return err // a partial line at the end is no event
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		switch {
		case len(line) == 0:
			if hasData {
				s.lastID = append(s.lastID[:0], id...)
				s.event(data, onConnected)
			}
			data, hasData = data[:0], false
		case line[0] == ':':
			s.heartbeats++
			if bytes.Equal(line, heartbeatLine) {
				now := time.Now().UnixNano()
				s.gaps = append(s.gaps, beatGap{lastBeat, now})
				lastBeat = now
			}
		default:
			field, value, _ := bytes.Cut(line, []byte{':'})
			value = bytes.TrimPrefix(value, []byte{' '})
			switch string(field) {
			case "data":
				if hasData {
					data = append(data, '\n')
				}
				data = append(data, value...)
				hasData = true
			case "id":
				id = append(id[:0], value...)
			case "retry":
				if n, err := strconv.Atoi(string(value)); err == nil {
					s.retryMS = n
				}
			}
		}
	}
}

var heartbeatLine = []byte(": heartbeat")

// event handles one dispatched event's data.
func (s *subscriber) event(data []byte, onConnected func()) {
	now := time.Now()
	ev := s.g.wire.parse(data)
	switch ev.kind {
	case evMessage:
	case evConnected:
		onConnected()
		return
	case evReset:
		s.resets++
		return
	default:
		return
	}
	if ev.corrupt {
		s.corrupt++
		return
	}
	text, sid, isNull := ev.text, ev.session, ev.isNull
	mk, ok := s.g.parseMarker(text)
	if !ok {
		s.foreign++ // not this run's: replay of an older run, or a stranger
		return
	}
	// The event must name the message's own target.
	if mk.target < 0 && !isNull || mk.target >= 0 && (isNull || string(sid) != s.g.sessionIDOf(int(mk.target))) {
		s.corrupt++
		return
	}
	if s.g.genSeen != nil {
		s.g.genSeen.add(mk.n, mk.gen) // stored, whatever else is wrong with it
	}
	if mk.target >= 0 && int(mk.target) != s.session {
		s.misrouted++
		return
	}
	if s.seen.set(mk.n) {
		s.dups++
		if len(s.dupNs) < maxDupSamples {
			s.dupNs = append(s.dupNs, mk.n)
		}
		return
	}
	s.received++
	s.g.delivered.Add(1)
	if s.lat == nil {
		s.lat = newHist()
	}
	sent := time.Unix(0, mk.sent)
	s.lat.add(now.Sub(sent))
	if n := s.g.phaseCount(); n > 2 { // by the phase of the message's first send
		if s.phaseLat == nil {
			s.phaseLat = make([]*hist, n)
		}
		p := s.g.phaseOf(sent)
		if s.phaseLat[p] == nil {
			s.phaseLat[p] = newHist()
		}
		s.phaseLat[p].add(now.Sub(sent))
	}
	s.lastRecv = now.UnixNano()
}
