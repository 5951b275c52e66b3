package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The floor is the smallest server that speaks the relay's wire format: POST
// /api/webhook appends the message to an in-memory log per target (a session
// or broadcast) and wakes that log's readers; GET /api/webhook/stream writes
// every new entry of its session's log and of the broadcast log. No auth, no
// validation beyond "message is a non-empty string", no history, no store, no
// logging. Measured on the same machine in the same run, it is the yardstick
// the relay's figures are divided by.
//
// Its delivery design is the relay's memory store stripped bare (append to a
// log, close a channel to wake readers, each reader writes what is new), so
// it is lossless under any load, like the relay, and a ratio against it
// measures the relay's overhead rather than a different algorithm.

// floorEnv names the environment variable that makes this binary serve the
// floor on the given address instead of generating load (used by -floor,
// which starts a copy of itself, and by tests).
const floorEnv = "LOADGEN_SERVE_FLOOR"

// floorMaxLifetime bounds a floor process that nobody stops.
const floorMaxLifetime = 2 * time.Hour

type floorServer struct {
	heartbeat time.Duration
	active    atomic.Int64

	// Test seams, so tests can prove the generator catches a faulty server:
	// copies returns how many times a stream writes its n-th message event
	// (0 drops it, 2 duplicates it); followAll makes a session stream also
	// follow every other session's log (misrouting).
	copies    func(n int) int
	followAll bool

	mu     sync.Mutex
	topics map[string]*floorTopic // "" is broadcast
}

type floorTopic struct {
	events  [][]byte // one-line JSON of each webhook_message, marshalled once
	changed chan struct{}
}

func newFloorServer() *floorServer {
	return &floorServer{heartbeat: 30 * time.Second, topics: make(map[string]*floorTopic)}
}

// topic returns the log of target; the caller holds mu.
func (f *floorServer) topic(target string) *floorTopic {
	t := f.topics[target]
	if t == nil {
		t = &floorTopic{changed: make(chan struct{})}
		f.topics[target] = t
	}
	return t
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *floorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/webhook" && r.Method == http.MethodPost:
		f.publish(w, r)
	case r.URL.Path == "/api/webhook" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, `{"status":"ok","activeConnections":`+strconv.FormatInt(f.active.Load(), 10)+`}`)
	case r.URL.Path == "/api/webhook/stream" && r.Method == http.MethodGet:
		f.stream(w, r)
	default:
		writeJSON(w, http.StatusNotFound, `{"success":false,"error":"Not found."}`)
	}
}

type floorEvent struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Message   string  `json:"message"`
	SessionID *string `json:"sessionId"`
	Timestamp int64   `json:"timestamp"`
}

func (f *floorServer) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, `{"success":false,"error":"Could not read the body."}`)
		return
	}
	var in struct {
		Message   string  `json:"message"`
		SessionID *string `json:"sessionId"`
	}
	if err := json.Unmarshal(body, &in); err != nil || strings.TrimSpace(in.Message) == "" {
		writeJSON(w, http.StatusBadRequest, `{"success":false,"error":"Field message is required."}`)
		return
	}
	if in.SessionID != nil && *in.SessionID == "" {
		in.SessionID = nil
	}
	now := time.Now().UnixMilli()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := strconv.FormatInt(now, 10) + "-" + hex.EncodeToString(rnd[:])
	data, err := json.Marshal(floorEvent{Type: "webhook_message", ID: id, Message: in.Message, SessionID: in.SessionID, Timestamp: now})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, `{"success":false,"error":"Internal error."}`)
		return
	}
	target := ""
	if in.SessionID != nil {
		target = *in.SessionID
	}
	f.mu.Lock()
	t := f.topic(target)
	t.events = append(t.events, data)
	close(t.changed)
	t.changed = make(chan struct{})
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, `{"success":true,"messageId":"`+id+`","timestamp":`+strconv.FormatInt(now, 10)+`}`)
}

func (f *floorServer) stream(w http.ResponseWriter, r *http.Request) {
	session := r.URL.Query().Get("sessionId")
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	f.active.Add(1)
	defer f.active.Add(-1)

	// Follow the session's log (when any) and the broadcast log, from now.
	var topics []*floorTopic
	f.mu.Lock()
	if session != "" {
		topics = append(topics, f.topic(session))
	}
	topics = append(topics, f.topic(""))
	if f.followAll && session != "" {
		for name, t := range f.topics {
			if name != "" && name != session {
				topics = append(topics, t)
			}
		}
	}
	pos := make([]int, len(topics))
	for i, t := range topics {
		pos[i] = len(t.events)
	}
	f.mu.Unlock()

	cursor := func(b []byte) []byte {
		for i, p := range pos {
			if i > 0 {
				b = append(b, '.')
			}
			b = strconv.AppendInt(b, int64(p), 10)
		}
		return b
	}
	buf := make([]byte, 0, 1024)
	buf = append(buf, "retry: 3000\n\n"...)
	buf = append(buf, "id: "...)
	buf = cursor(buf)
	buf = append(buf, "\ndata: {\"type\":\"connected\",\"connectionId\":\"floor\",\"sessionId\":"...)
	if session != "" {
		buf = strconv.AppendQuote(buf, session)
	} else {
		buf = append(buf, "null"...)
	}
	buf = append(buf, "}\n\n"...)
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := w.Write(buf)
		buf = buf[:0]
		return err == nil && rc.Flush() == nil
	}
	if !flush() {
		return
	}
	hb := time.NewTicker(f.heartbeat)
	defer hb.Stop()
	var wake [2]<-chan struct{}
	pending := make([][][]byte, len(topics))
	var anyChange chan struct{} // followAll only: merges the wake-ups of many logs
	sent := 0
	for {
		f.mu.Lock()
		for i, t := range topics {
			pending[i] = t.events[pos[i]:]
			if i < len(wake) {
				wake[i] = t.changed
			}
		}
		if len(topics) > len(wake) {
			anyChange = make(chan struct{})
			chans := make([]<-chan struct{}, len(topics))
			for i, t := range topics {
				chans[i] = t.changed
			}
			go firstOf(chans, anyChange, r.Context().Done())
		}
		f.mu.Unlock()
		for i := range topics {
			for _, data := range pending[i] {
				pos[i]++
				copies := 1
				if f.copies != nil {
					copies = f.copies(sent)
				}
				sent++
				for range copies {
					buf = append(buf, "id: "...)
					buf = cursor(buf)
					buf = append(buf, "\ndata: "...)
					buf = append(buf, data...)
					buf = append(buf, '\n', '\n')
				}
			}
			pending[i] = nil
		}
		if len(buf) > 0 && !flush() {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-wake[0]:
		case <-wake[1]: // nil (never fires) without a session
		case <-anyChange: // nil unless followAll
		case <-hb.C:
			buf = append(buf, ": heartbeat\n\n"...)
			if !flush() {
				return
			}
		}
	}
}

// firstOf closes out when any of chans is closed (or done is).
func firstOf(chans []<-chan struct{}, out chan struct{}, done <-chan struct{}) {
	cases := make([]reflect.SelectCase, 0, len(chans)+1)
	for _, c := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
	}
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(done)})
	reflect.Select(cases)
	close(out)
}

// serveFloor runs the floor on addr until ctx ends, printing its URL on out
// once it listens.
func serveFloor(ctx context.Context, addr string, out io.Writer) error {
	if err := checkLoopback(addr); err != nil {
		return err
	}
	srv := &http.Server{Handler: newFloorServer(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return serveBounded(ctx, "floor", addr, srv, 2*time.Second, out, "")
}

// serveBounded serves srv on addr (loopback, checked by the caller) until
// ctx ends or floorMaxLifetime passes, printing "NAME listening on URL" and
// then note on out once it listens. grace > 0 lets open requests finish
// before the close.
func serveBounded(ctx context.Context, name, addr string, srv *http.Server, grace time.Duration, out io.Writer, note string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	fmt.Fprintf(out, "%s listening on http://%s%s\n", name, ln.Addr(), note)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(ctx, floorMaxLifetime)
	defer cancel()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if grace > 0 {
		sctx, scancel := context.WithTimeout(context.Background(), grace)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}
	return srv.Close()
}

// startFloorProcess starts this executable as a floor server on a free
// loopback port and waits for its URL.
func startFloorProcess(ctx context.Context) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("floor: find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), floorEnv+"=127.0.0.1:0")
	cmd.Stderr = os.Stderr
	// The floor dies with the generator, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("floor: start %s: %w", exe, err)
	}
	p := newServerProcess(cmd, "")
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, br)
	}()
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case line := <-lines:
		i := strings.Index(line, "http://")
		if i < 0 {
			p.Stop()
			return nil, fmt.Errorf("floor: unexpected first line %q", line)
		}
		p.URL = strings.TrimSpace(line[i:])
		return p, nil
	case <-t.C:
		p.Stop()
		return nil, errors.New("floor: no URL within 15s")
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}
