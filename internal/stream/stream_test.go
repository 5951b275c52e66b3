package stream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/cursor"
	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/server"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/stream/streamtest"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

type env struct {
	t   *testing.T
	srv *httptest.Server
	st  storetest.Store
	cfg config.Config
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func newEnv(t *testing.T, b storetest.Backend, mutate func(*config.Config)) *env {
	t.Helper()
	cfg := config.Defaults()
	cfg.RateLimitPerMinute, cfg.SessionRateLimitPerMinute = 0, 0
	cfg.MaxStreamsPerIP = 0 // every test stream comes from 127.0.0.1
	cfg.PollInterval = 100 * time.Millisecond
	cfg.HoleTimeout = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	st := b.New(t, storetest.Options{TTL: cfg.MessageTTL})
	h := server.New(st, cfg, server.Options{Ingest: ingest.Options{Logger: quiet()}, Stream: stream.Options{Logger: quiet()}})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return &env{t: t, srv: srv, st: st, cfg: cfg}
}

// forEachBackend runs fn against the memory store and DynamoDB Local.
func forEachBackend(t *testing.T, fn func(t *testing.T, b storetest.Backend)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

type posted struct {
	ID        string `json:"messageId"`
	Timestamp int64  `json:"timestamp"`
	Success   bool   `json:"success"`
}

func (e *env) post(sessionID, text string) posted {
	p, err := e.tryPost(sessionID, text)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) tryPost(sessionID, text string) (posted, error) {
	body := map[string]any{"message": text}
	if sessionID != "" {
		body["sessionId"] = sessionID
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(e.srv.URL+"/api/webhook", "application/json", strings.NewReader(string(b)))
	if err != nil {
		return posted{}, err
	}
	defer resp.Body.Close()
	var p posted
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 200 || !p.Success {
		return posted{}, fmt.Errorf("post %q: status %d, %v", text, resp.StatusCode, err)
	}
	return p, nil
}

// postAsSender posts like a correct sender: on 503 (nothing stored) it
// sends again as a new request, on 504 (outcome unknown) again with the same
// Idempotency-Key, until a 200. Any other answer is an error.
func (e *env) postAsSender(sessionID, text string) (posted, error) {
	body := map[string]any{"message": text}
	if sessionID != "" {
		body["sessionId"] = sessionID
	}
	b, _ := json.Marshal(body)
	key := message.New(time.Now(), "", "").ID
	for attempt := 0; attempt < 200; attempt++ {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/webhook", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return posted{}, err
		}
		var p posted
		derr := json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			if derr != nil || !p.Success {
				return posted{}, fmt.Errorf("post %q: 200 with %+v, %v", text, p, derr)
			}
			return p, nil
		case http.StatusServiceUnavailable:
			key = message.New(time.Now(), "", "").ID // nothing was stored: a new message
		case http.StatusGatewayTimeout:
			// may be stored: the same key again
		default:
			return posted{}, fmt.Errorf("post %q: status %d", text, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return posted{}, fmt.Errorf("post %q: no 200 after 200 attempts", text)
}

// event is a parsed data payload.
type event struct {
	Type         string  `json:"type"`
	ID           string  `json:"id"`
	Message      string  `json:"message"`
	SessionID    *string `json:"sessionId"`
	Timestamp    int64   `json:"timestamp"`
	ConnectionID string  `json:"connectionId"`
	Reason       string  `json:"reason"`
	cursor       string
	comment      string
}

type sub struct {
	resp   *http.Response
	events chan event
	cancel context.CancelFunc
	done   chan struct{}
	lastID string
	mu     sync.Mutex
}

func (e *env) subscribe(sessionID, lastEventID string, viaQuery bool) *sub {
	e.t.Helper()
	s, err := e.trySubscribe(sessionID, lastEventID, viaQuery)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) trySubscribe(sessionID, lastEventID string, viaQuery bool, edits ...func(*http.Request)) (*sub, error) {
	q := url.Values{}
	if sessionID != "" {
		q.Set("sessionId", sessionID)
	}
	if lastEventID != "" && viaQuery {
		q.Set("lastEventId", lastEventID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/webhook/stream?"+q.Encode(), nil)
	if lastEventID != "" && !viaQuery {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	for _, edit := range edits {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		cancel()
		return nil, fmt.Errorf("stream answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sub{resp: resp, events: make(chan event, 256), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.events)
		r := sse.NewReader(resp.Body)
		r.KeepComment = true
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			var x event
			if ev.Name == "comment" {
				x.comment = ev.Data
			} else if err := json.Unmarshal([]byte(ev.Data), &x); err != nil {
				x.Type = "unparsable: " + ev.Data
			}
			x.cursor = ev.ID
			s.mu.Lock()
			s.lastID = ev.ID
			s.mu.Unlock()
			s.events <- x
		}
	}()
	e.t.Cleanup(s.close)
	return s, nil
}

func (s *sub) close() {
	s.cancel()
	<-s.done
	s.resp.Body.Close()
}

func (s *sub) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// next returns the next data event (comments skipped), failing after d.
func (s *sub) next(t *testing.T, d time.Duration) event {
	t.Helper()
	ev, ok := s.tryNext(d)
	if !ok {
		t.Fatalf("no event within %v", d)
	}
	return ev
}

func (s *sub) tryNext(d time.Duration) (event, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return event{}, false
			}
			if ev.comment != "" {
				continue
			}
			return ev, true
		case <-timer.C:
			return event{}, false
		}
	}
}

// messages collects n webhook messages.
func (s *sub) messages(t *testing.T, n int, d time.Duration) []event {
	t.Helper()
	var out []event
	deadline := time.Now().Add(d)
	for len(out) < n {
		ev, ok := s.tryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("got %d of %d messages: %+v", len(out), n, out)
		}
		if ev.Type == "webhook_message" {
			out = append(out, ev)
		}
	}
	return out
}

// quietFor asserts that no webhook message arrives for d.
func (s *sub) quietFor(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev, ok := s.tryNext(time.Until(deadline))
		if !ok {
			return
		}
		if ev.Type == "webhook_message" {
			t.Fatalf("unexpected message %q", ev.Message)
		}
	}
}

func (s *sub) connected(t *testing.T) event {
	t.Helper()
	ev := s.next(t, 10*time.Second)
	if ev.Type != "connected" || ev.ConnectionID == "" || ev.cursor == "" {
		t.Fatalf("first event %+v, want connected with an id", ev)
	}
	return ev
}

func TestHeadersAndConnected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		s := e.subscribe("abc", "", false)
		for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
			if got := s.resp.Header.Get(k); got != want {
				t.Fatalf("%s = %q, want %q", k, got, want)
			}
		}
		ev := s.connected(t)
		if ev.SessionID == nil || *ev.SessionID != "abc" {
			t.Fatalf("connected sessionId = %v", ev.SessionID)
		}
		if _, err := cursor.Parse(ev.cursor); err != nil {
			t.Fatalf("connected id %q is not a cursor", ev.cursor)
		}
		b2 := e.subscribe("", "", false).connected(t)
		if b2.SessionID != nil {
			t.Fatalf("broadcast stream's sessionId = %q, want null", *b2.SessionID)
		}
	})
}

func TestRetryLineFirst(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { c.RetryMS = 1234 })
	resp, err := http.Get(e.srv.URL + "/api/webhook/stream?sessionId=x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "retry: 1234\n" {
		t.Fatalf("first line %q, want retry: 1234", line)
	}
}

func TestTargetingMatrix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		subs := map[string]*sub{}
		for _, s := range []string{"a", "b", ""} {
			subs[s] = e.subscribe(s, "", false)
			subs[s].connected(t)
		}
		e.post("a", "to a")
		e.post("b", "to b")
		e.post("", "to all")
		want := map[string][]string{"a": {"to a", "to all"}, "b": {"to b", "to all"}, "": {"to all"}}
		for s, texts := range want {
			got := subs[s].messages(t, len(texts), 10*time.Second)
			seen := map[string]bool{}
			for _, ev := range got {
				seen[ev.Message] = true
				if ev.Message == "to all" && ev.SessionID != nil {
					t.Fatalf("broadcast arrived with sessionId %q, want null", *ev.SessionID)
				}
				if ev.Message == "to a" && (ev.SessionID == nil || *ev.SessionID != "a") {
					t.Fatalf("targeted message without its sessionId")
				}
			}
			for _, text := range texts {
				if !seen[text] {
					t.Fatalf("stream %q missed %q (got %+v)", s, text, got)
				}
			}
			subs[s].quietFor(t, 300*time.Millisecond)
		}
	})
}

func TestReplayLastFiveInTotal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		var texts []string
		for i := range 7 {
			sess := []string{"r", ""}[i%2]
			text := fmt.Sprintf("m%d", i)
			e.post(sess, text)
			texts = append(texts, text)
			time.Sleep(2 * time.Millisecond) // distinct timestamps
		}
		e.post("other", "not for r")
		s := e.subscribe("r", "", false)
		s.connected(t)
		got := s.messages(t, 5, 10*time.Second)
		for i, ev := range got {
			if ev.Message != texts[2+i] {
				t.Fatalf("replay[%d] = %q, want %q", i, ev.Message, texts[2+i])
			}
		}
		s.quietFor(t, 300*time.Millisecond)
	})
}

func TestQuietPlannedCloseResumes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.MaxStreamDuration = 2 * time.Second })
		s := e.subscribe("q", "", false)
		id := s.connected(t).cursor
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("stream did not end by plan")
		}
		m1 := e.post("q", "while away")
		m2 := e.post("", "broadcast while away")
		s2 := e.subscribe("q", id, false)
		if ev := s2.connected(t); ev.cursor != id {
			t.Fatalf("resumed connected id %q, want %q", ev.cursor, id)
		}
		got := s2.messages(t, 2, 10*time.Second)
		if got[0].ID != m1.ID || got[1].ID != m2.ID {
			t.Fatalf("resume got %+v", got)
		}
		s2.quietFor(t, 300*time.Millisecond)
	})
}

func TestBadCursorsReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		for i := range 6 {
			e.post("c", fmt.Sprint("m", i))
			time.Sleep(2 * time.Millisecond)
		}
		live := e.subscribe("c", "", false).connected(t)
		cur, _ := cursor.Parse(live.cursor)
		ahead := cur
		ahead.Session += 10
		other := cur
		other.Epoch++
		tests := []struct{ name, id string }{
			{"garbage", "not-a-cursor"},
			{"other epoch", other.String()},
			{"ahead of head", ahead.String()},
		}
		for _, tt := range tests {
			for _, viaQuery := range []bool{false, true} {
				s := e.subscribe("c", tt.id, viaQuery) // fails on a non-200
				s.connected(t)
				r := s.next(t, 5*time.Second)
				if r.Type != "reset" || r.Reason == "" {
					t.Fatalf("%s: second event %+v, want reset", tt.name, r)
				}
				got := s.messages(t, 5, 10*time.Second)
				if got[4].Message != "m5" || got[0].Message != "m1" {
					t.Fatalf("%s: recent after reset %+v", tt.name, got)
				}
				s.close()
			}
		}
	})
}

func TestResumeExactly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		for _, viaQuery := range []bool{false, true} {
			e := newEnv(t, b, nil)
			s := e.subscribe("x", "", false)
			s.connected(t)
			e.post("x", "first")
			e.post("", "second")
			s.messages(t, 2, 10*time.Second)
			last := s.last()
			s.close()

			var mu sync.Mutex
			want := map[string]bool{}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						sess := []string{"x", "", "y"}[(w+i)%3]
						p, err := e.tryPost(sess, fmt.Sprintf("gap %d %d", w, i))
						if err != nil {
							t.Error(err)
							return
						}
						if sess != "y" {
							mu.Lock()
							want[p.ID] = true
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			s2 := e.subscribe("x", last, viaQuery)
			s2.connected(t)
			got := s2.messages(t, len(want), 15*time.Second)
			seen := map[string]bool{}
			for _, ev := range got {
				if !want[ev.ID] || seen[ev.ID] {
					t.Fatalf("resume delivered %q (expected %v, twice %v)", ev.Message, want[ev.ID], seen[ev.ID])
				}
				seen[ev.ID] = true
			}
			s2.quietFor(t, 300*time.Millisecond)
		}
	})
}

// The load test runs a third time on DynamoDB Local under injected faults
// (throttling storm, lost replies, 500s after applying, writers held for
// seconds), with writers that retry like correct senders: a message whose
// 503 was a lie would arrive under an id nobody was given (misrouted), or
// twice.
func TestLoadWithReconnects(t *testing.T) {
	backends := append(storetest.Backends(), storetest.FaultyBackend(3*time.Second))
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			testLoadWithReconnects(t, b)
		})
	}
}

func testLoadWithReconnects(t *testing.T, b storetest.Backend) {
	streams, sessions, writers, total := 100, 10, 10, 2000
	poll, minLife, maxLife := 100*time.Millisecond, 50, 450
	switch b.Name {
	case "DynamoDBLocal":
		// DynamoDB Local on two cores: fewer streams and polls, same guarantees.
		streams, total, poll, minLife, maxLife = 30, 600, 250*time.Millisecond, 300, 1500
	case "DynamoDBLocalFaults":
		streams, total, poll, minLife, maxLife = 20, 300, 250*time.Millisecond, 300, 1500
	}
	e := newEnv(t, b, func(c *config.Config) { c.PollInterval = poll; c.ReplayCount = 0 })
	sessionOf := func(k int) string {
		if k%(sessions+1) == sessions {
			return ""
		}
		return fmt.Sprint("s", k%(sessions+1))
	}
	type result struct {
		session    string
		got        map[string]int
		trace      []string
		reconnects int
		err        error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Once the writers are done, expected[s] says how many messages a
	// stream of session s must end with.
	writersDone := make(chan struct{})
	expected := map[string]int{}
	results := make(chan result, streams)
	ready := make(chan struct{}, streams)
	for i := range streams {
		sess := sessionOf(i)
		go func() {
			r := result{session: sess, got: map[string]int{}}
			defer func() { results <- r }()
			complete := func() bool {
				select {
				case <-writersDone:
					return len(r.got) >= expected[sess]
				default:
					return false
				}
			}
			last := ""
			doneCh := writersDone
			for first := true; ; first = false {
				s, err := e.trySubscribe(sess, last, false)
				if err != nil {
					r.err = err
					if first {
						ready <- struct{}{} // fail the test, not hang it
					}
					return
				}
				ev, ok := s.tryNext(10 * time.Second)
				if !ok || ev.Type != "connected" {
					r.err = fmt.Errorf("no connected event after %d reconnects: %+v", r.reconnects, ev)
					return
				}
				last = ev.cursor // a quiet connection resumes from here
				if first {
					ready <- struct{}{}
				}
				// Read for a random while, then drop the connection and
				// resume from the last event actually consumed.
				drop := time.After(time.Duration(minLife+rand.IntN(maxLife-minLife)) * time.Millisecond)
			read:
				for {
					select {
					case ev, ok := <-s.events:
						if !ok {
							break read
						}
						if ev.comment != "" {
							continue
						}
						if ev.Type == "webhook_message" {
							r.got[ev.ID]++
							r.trace = append(r.trace, ev.cursor+"="+ev.Message)
						}
						if ev.Type != "webhook_message" {
							r.err = fmt.Errorf("unexpected %s event %+v resuming from %s", ev.Type, ev, last)
							s.close()
							return
						}
						last = ev.cursor
						if complete() {
							s.close()
							// Nothing more may come.
							return
						}
					case <-doneCh:
						doneCh = nil
						if complete() {
							s.close()
							return
						}
					case <-drop:
						break read
					case <-ctx.Done():
						r.err = fmt.Errorf("timed out with %d of %d messages, last cursor %s", len(r.got), expected[sess], last)
						s.close()
						return
					}
				}
				s.close()
				r.trace = append(r.trace, "reconnect from "+last)
				r.reconnects++
			}
		}()
	}
	for range streams {
		<-ready
	}
	var mu sync.Mutex
	sent := map[string]string{} // id -> session
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / writers {
				sess := sessionOf(w + i)
				p, err := e.postAsSender(sess, fmt.Sprintf("load %d %d", w, i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent[p.ID] = sess
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range sessions + 1 {
		sess := sessionOf(i)
		for _, to := range sent {
			if to == "" || to == sess {
				expected[sess]++
			}
		}
	}
	close(writersDone)
	lost, dup, wrong, reconnects := 0, 0, 0, 0
	for range streams {
		r := <-results
		if r.err != nil {
			t.Errorf("stream %q: %v\n%s", r.session, r.err, strings.Join(r.trace, "\n"))
		}
		reconnects += r.reconnects
		for id, to := range sent {
			if (to == "" || to == r.session) && r.got[id] == 0 {
				lost++
			}
		}
		for id, n := range r.got {
			if n > 1 {
				dup++
			}
			if to, ok := sent[id]; !ok || (to != "" && to != r.session) {
				wrong++
			}
		}
	}
	if lost > 0 {
		for id, to := range sent {
			if to != "" {
				continue
			}
			_ = id
		}
		for _, part := range []string{"broadcast", "session#s1", "session#s2"} {
			es, _ := e.st.Read(context.Background(), part, 0, 1000)
			var line []string
			for _, x := range es {
				line = append(line, fmt.Sprintf("%d%s", x.Seq, map[bool]string{true: "T", false: ""}[x.Tombstone]))
			}
			t.Logf("%s: %s", part, strings.Join(line, " "))
		}
	}
	if lost+dup+wrong != 0 {
		t.Fatalf("%d streams, %d messages: lost %d, duplicated %d, misrouted %d", streams, len(sent), lost, dup, wrong)
	}
	t.Logf("%d streams over %d sessions + broadcast, %d writers, %d messages, %d reconnects: 0 lost, 0 duplicated, 0 misrouted",
		streams, sessions, writers, len(sent), reconnects)
}

func TestHeartbeatAndLeases(t *testing.T) {
	// Not parallel: it counts the stream handler's goroutines.
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testHeartbeatAndLeases(t, b) })
	}
}

func testHeartbeatAndLeases(t *testing.T, b storetest.Backend) {
	{
		e := newEnv(t, b, func(c *config.Config) { c.HeartbeatInterval = 300 * time.Millisecond })
		health := func() int {
			resp, err := http.Get(e.srv.URL + "/api/webhook")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var h struct {
				Status            string `json:"status"`
				ActiveConnections int    `json:"activeConnections"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Status != "ok" {
				t.Fatalf("health %d %+v %v", resp.StatusCode, h, err)
			}
			return h.ActiveConnections
		}
		waitFor := func(want int) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for health() != want {
				if time.Now().After(deadline) {
					t.Fatalf("activeConnections = %d, want %d", health(), want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		var subs []*sub
		for i := range 5 {
			s := e.subscribe(fmt.Sprint("h", i), "", false)
			s.connected(t)
			subs = append(subs, s)
		}
		waitFor(5)
		// An idle stream gets heartbeats.
		deadline := time.After(5 * time.Second)
		beats := 0
		for beats < 2 {
			select {
			case ev := <-subs[0].events:
				if ev.comment == "heartbeat" {
					beats++
				}
			case <-deadline:
				t.Fatalf("%d heartbeats in 5s at a 300ms interval", beats)
			}
		}
		for _, s := range subs {
			s.close()
		}
		waitFor(0)
		// Every stream goroutine is gone.
		deadlineG := time.Now().Add(5 * time.Second)
		for streamtest.Goroutines() > 0 {
			if time.Now().After(deadlineG) {
				t.Fatalf("%d stream goroutines left after every client left", streamtest.Goroutines())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestMessageIntegrity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		s := e.subscribe("i", "", false)
		s.connected(t)
		texts := []string{
			"line one\nline two\r\nline three",
			"data: not a field\n\nid: 99\nevent: x",
			"emoji 😀🎉 and ünïcödé",
			"<script>alert(1)</script>",
			"  padded  ",
		}
		for _, text := range texts {
			e.post("i", text)
		}
		got := s.messages(t, len(texts), 10*time.Second)
		for i, ev := range got {
			if ev.Message != texts[i] {
				t.Fatalf("message %d arrived as %q, sent %q", i, ev.Message, texts[i])
			}
		}
	})
}

func TestCORSAndMethods(t *testing.T) {
	tests := []struct {
		name, allowed, origin, method string
		status                        int
		acao                          string
	}{
		{"same origin default", "", "", "GET", 200, ""},
		{"foreign origin not echoed", "", "https://evil.example", "GET", 200, ""},
		{"listed origin", "https://app.example", "https://app.example", "GET", 200, "https://app.example"},
		{"wildcard", "*", "https://any.example", "GET", 200, "*"},
		{"preflight allowed", "https://app.example", "https://app.example", "OPTIONS", 204, "https://app.example"},
		{"preflight refused", "https://app.example", "https://evil.example", "OPTIONS", 403, ""},
		{"post not allowed", "", "", "POST", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, storetest.Backends()[0], func(c *config.Config) {
				_ = config.Variables
				if tt.allowed != "" {
					c.AllowedOrigins = []string{tt.allowed}
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, tt.method, e.srv.URL+"/api/webhook/stream?sessionId=c", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Access-Control-Allow-Origin") != tt.acao {
				t.Fatalf("status %d ACAO %q, want %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tt.status, tt.acao)
			}
			if tt.status >= 400 && resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("error with Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

// counting counts DynamoDB requests by operation.
type counting struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counting) observe(op string, _ any) {
	c.mu.Lock()
	c.n[op]++
	c.mu.Unlock()
}

func (c *counting) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// TestIdleStreamCost: idle streams of one session on one instance, on
// DynamoDB, cost at most one Query per followed partition per POLL_INTERVAL
// together (the instance's hub reads for all of them), and one lease
// renewal per heartbeat each.
func TestIdleStreamCost(t *testing.T) {
	const streams = 5
	poll, heartbeat, window := 250*time.Millisecond, time.Second, 4*time.Second
	cfg := config.Defaults()
	cfg.PollInterval, cfg.HeartbeatInterval = poll, heartbeat
	counter := &counting{n: map[string]int{}}
	st := storetest.NewDynamo(t, storetest.Options{}, func(api dynamostore.API) dynamostore.API {
		return dynamostore.Observed{API: api, Observe: counter.observe}
	})
	h := server.New(st, cfg, server.Options{Ingest: ingest.Options{Logger: quiet()}, Stream: stream.Options{Logger: quiet()}})
	srv := httptest.NewServer(h)
	defer func() { h.Drain(); srv.Close() }()
	e := &env{t: t, srv: srv, st: st, cfg: cfg}
	for range streams {
		e.subscribe("idle", "", false).connected(t)
	}
	time.Sleep(poll) // let the opening requests finish
	before := counter.snapshot()
	time.Sleep(window)
	after := counter.snapshot()
	used := map[string]int{}
	for op, n := range after {
		if d := n - before[op]; d > 0 {
			used[op] = d
		}
	}
	const partitions = 2
	maxQueries := partitions * (int(window/poll) + 1)
	// One lease item per renewal, one for its session (presence), and one
	// more per scope a cap counts (the default per-IP cap).
	items := 2
	if cfg.MaxStreamsPerIP > 0 {
		items++
	}
	maxLeases := (int(window/heartbeat) + 1) * items * streams
	if used["Query"] > maxQueries || used["PutItem"] > maxLeases || len(used) > 2 {
		t.Fatalf("%d idle streams over %v made %v; bound: Query <= %d (not per stream), PutItem (lease) <= %d, nothing else", streams, window, used, maxQueries, maxLeases)
	}
	if used["Query"] < maxQueries/2 {
		t.Fatalf("idle stream made only %d Queries in %v: is it polling at all?", used["Query"], window)
	}
	perMinute := float64(used["Query"]+used["PutItem"]) * float64(time.Minute) / float64(window) / streams
	t.Logf("%d idle streams, %v: %v (bound Query <= %d, PutItem <= %d); %.0f requests per stream-minute at POLL_INTERVAL=%v",
		streams, window, used, maxQueries, maxLeases, perMinute, poll)
}
