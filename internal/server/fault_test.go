package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/server"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/stream/streamtest"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func testConfig(mutate func(*config.Config)) config.Config {
	cfg := config.Defaults()
	cfg.RateLimitPerMinute, cfg.SessionRateLimitPerMinute = 0, 0
	cfg.MaxStreamsPerIP = 0 // every test stream comes from 127.0.0.1
	cfg.ReplayCount = 0
	cfg.PollInterval = 200 * time.Millisecond
	cfg.HoleTimeout = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

func start(t *testing.T, st server.Store, cfg config.Config, sopts stream.Options) *httptest.Server {
	t.Helper()
	if sopts.Logger == nil {
		sopts.Logger = quiet()
	}
	h := server.New(st, cfg, server.Options{Ingest: ingest.Options{Logger: quiet()}, Stream: sopts})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return srv
}

// post sends one message and returns its id and the status.
func post(base, sessionID, text string) (string, int, error) {
	body, _ := json.Marshal(map[string]string{"message": text, "sessionId": sessionID})
	if sessionID == "" {
		body, _ = json.Marshal(map[string]string{"message": text})
	}
	resp, err := http.Post(base+"/api/webhook", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var r struct {
		MessageID string `json:"messageId"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r.MessageID, resp.StatusCode, nil
}

// follower is a client that follows a stream across reconnects, as a
// browser does, recording what it receives.
type follower struct {
	mu         sync.Mutex
	got        map[string]int
	heartbeats []time.Time
	cancel     context.CancelFunc
	done       chan struct{}
}

func follow(base, sessionID string) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{got: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		last := ""
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/webhook/stream?sessionId="+sessionID, nil)
			if last != "" {
				req.Header.Set("Last-Event-ID", last)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			r := sse.NewReader(resp.Body)
			r.KeepComment = true
			for {
				ev, err := r.Next()
				if err != nil {
					break
				}
				if ev.Name == "comment" {
					f.mu.Lock()
					f.heartbeats = append(f.heartbeats, time.Now())
					f.mu.Unlock()
					continue
				}
				var m struct {
					Type string `json:"type"`
					ID   string `json:"id"`
				}
				if json.Unmarshal([]byte(ev.Data), &m) == nil && m.Type == "webhook_message" {
					f.mu.Lock()
					f.got[m.ID]++
					f.mu.Unlock()
				}
				last = ev.ID
			}
			resp.Body.Close()
		}
	}()
	return f
}

func (f *follower) stop() { f.cancel(); <-f.done }

func (f *follower) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[id]
}

func (f *follower) heartbeatsSince(t time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, h := range f.heartbeats {
		if h.After(t) {
			n++
		}
	}
	return n
}

// TestDynamoDBOutage kills DynamoDB Local while webhooks and streams are
// active: POSTs answer 503 or 504 (never 200 and then lost), streams keep
// heartbeating, and after a restart on the same data every message that got
// a 200 reaches every stream it targets, once.
func TestDynamoDBOutage(t *testing.T) {
	p := dynamotest.Start(t, "")
	client := dynamotest.Client(t, p.Endpoint(), func(o *dynamodb.Options) { o.RetryMaxAttempts = 2 })
	table := dynamotest.TableName(t)
	ctx := context.Background()
	if err := dynamostore.CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	st, err := dynamostore.New(ctx, client, table, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(func(c *config.Config) { c.HeartbeatInterval = 300 * time.Millisecond })
	srv := start(t, st, cfg, stream.Options{})

	targets := []string{"a", "b", ""}
	followers := map[string]*follower{}
	for _, s := range targets {
		followers[s] = follow(srv.URL, s)
		defer followers[s].stop()
	}
	time.Sleep(500 * time.Millisecond) // let them connect

	var mu sync.Mutex
	accepted := map[string]string{} // id -> session
	statuses := map[int]int{}
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				case <-time.After(20 * time.Millisecond):
				}
				sess := targets[(w+i)%len(targets)]
				id, status, err := post(srv.URL, sess, fmt.Sprintf("outage %d %d", w, i))
				mu.Lock()
				if err != nil {
					statuses[-1]++
				} else {
					statuses[status]++
				}
				if status == 200 {
					accepted[id] = sess
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	p.Kill()
	killedAt := time.Now()
	// Long enough for a POST to learn its write was refused (the SDK's
	// retries, then closing its own number) and answer 503.
	time.Sleep(5 * time.Second)
	mu.Lock()
	during := statuses[503]
	mu.Unlock()
	beats := followers["a"].heartbeatsSince(killedAt.Add(200 * time.Millisecond))
	p.Restart()
	mu.Lock()
	okBefore := statuses[200]
	mu.Unlock()
	time.Sleep(1500 * time.Millisecond)
	close(stopWriters)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for status, n := range statuses {
		// 504: a write cut off mid-flight whose outcome the relay could not
		// learn before the store came back; truthful, and never counted as
		// accepted below.
		if status != 200 && status != 503 && status != 504 {
			t.Fatalf("%d POSTs answered %d; want only 200, 503 or 504", n, status)
		}
	}
	if during == 0 {
		t.Fatalf("no POST answered 503 while DynamoDB Local was down (statuses %v)", statuses)
	}
	if statuses[200] == okBefore {
		t.Fatalf("no POST succeeded after DynamoDB Local came back (statuses %v)", statuses)
	}
	if beats < 2 {
		t.Fatalf("stream sent %d heartbeats during the outage, want it to keep heartbeating", beats)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range targets {
		f := followers[s]
		for id, to := range accepted {
			if to != "" && to != s {
				if f.count(id) != 0 {
					t.Fatalf("stream %q got a message for %q", s, to)
				}
				continue
			}
			for f.count(id) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := f.count(id); n != 1 {
				t.Fatalf("stream %q received accepted message %s %d times, want once", s, id, n)
			}
		}
	}
	t.Logf("statuses %v; %d heartbeats on an idle stream during the outage; every accepted message delivered once", statuses, beats)
}

// TestSlowConsumerDropped: a client that stops reading is dropped after its
// buffers fill and the write timeout passes; other streams are not blocked.
func TestSlowConsumerDropped(t *testing.T) {
	st := memstore.New(store.Options{})
	cfg := testConfig(nil)
	srv := start(t, st, cfg, stream.Options{WriteTimeout: 500 * time.Millisecond})
	addr := strings.TrimPrefix(srv.URL, "http://")

	// The slow client: a raw connection with a tiny receive buffer that
	// never reads past the request.
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /api/webhook/stream HTTP/1.1\r\nHost: %s\r\n\r\n", addr)

	healthy := follow(srv.URL, "")
	defer healthy.stop()
	leases := func() int {
		n, err := st.CountLeases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); leases() < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("streams did not open: %d leases", leases())
		}
		time.Sleep(20 * time.Millisecond)
	}
	big := strings.Repeat("x", 3900)
	var ids []string
	start := time.Now()
	for i := range 3000 {
		id, status, err := post(srv.URL, "", fmt.Sprintf("%d %s", i, big))
		if err != nil || status != 200 {
			t.Fatalf("post %d: %d %v", i, status, err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		for deadline := time.Now().Add(10 * time.Second); healthy.count(id) == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("the healthy stream is stuck behind the slow one")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	for deadline := time.Now().Add(10 * time.Second); leases() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the slow consumer was not dropped: %d leases", leases())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("3000 x 4 KB broadcast: healthy stream got all in %v; the stalled one was dropped", elapsed.Round(time.Millisecond))
}

// TestConnectDisconnectCycles: many short-lived streams leave no goroutine
// and no lease behind.
func TestConnectDisconnectCycles(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			cycles := 2000
			if b.Name != "Memory" {
				cycles = 300 // each open costs a few DynamoDB Local requests
			}
			st := b.New(t, storetest.Options{})
			srv := start(t, st, testConfig(nil), stream.Options{})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < cycles; i += 8 {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/webhook/stream?sessionId=c%d", srv.URL, i%50), nil)
						resp, err := client.Do(req)
						if err != nil {
							cancel()
							errs <- err
							return
						}
						r := sse.NewReader(resp.Body)
						if _, err := r.Next(); err != nil { // the connected event
							cancel()
							errs <- fmt.Errorf("cycle %d: %w", i, err)
							return
						}
						cancel()
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				n, err := st.CountLeases(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				g := streamtest.Goroutines()
				if n == 0 && g == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %d cycles: %d leases and %d stream goroutines left", cycles, n, g)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%d connect/disconnect cycles: 0 leases, 0 stream goroutines left", cycles)
		})
	}
}
