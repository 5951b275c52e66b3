package stream_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

// flushRecorder is a ResponseWriter that keeps each flush apart, with when
// it happened: what a client's socket would see as one write.
type flushRecorder struct {
	header http.Header
	mu     sync.Mutex
	buf    bytes.Buffer
	writes []recordedWrite
	wrote  chan struct{} // gets a value on every flush
}

type recordedWrite struct {
	at   time.Time
	data string
}

func newFlushRecorder() *flushRecorder {
	return &flushRecorder{header: http.Header{}, wrote: make(chan struct{}, 1024)}
}

func (r *flushRecorder) Header() http.Header { return r.header }
func (r *flushRecorder) WriteHeader(int)     {}

func (r *flushRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *flushRecorder) Flush() {
	r.mu.Lock()
	r.writes = append(r.writes, recordedWrite{time.Now(), r.buf.String()})
	r.buf.Reset()
	r.mu.Unlock()
	r.wrote <- struct{}{}
}

// messageWrites returns the flushes that carried webhook messages, and how
// many each carried.
func (r *flushRecorder) messageWrites() (at []time.Time, counts []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.writes {
		if n := bytes.Count([]byte(w.data), []byte(`"type":"webhook_message"`)); n > 0 {
			at, counts = append(at, w.at), append(counts, n)
		}
	}
	return at, counts
}

// TestBusyStreamCoalescesWrites: with FLUSH_DELAY, a message after a quiet
// spell is written at once, and a burst right behind it waits for the delay
// and goes out in one write; with 0 the burst is written without waiting.
func TestBusyStreamCoalescesWrites(t *testing.T) {
	const burst = 20
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"delay", 400 * time.Millisecond},
		{"off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.ReplayCount, cfg.MaxStreamsPerIP = 0, 0
			cfg.FlushDelay = tc.delay
			st := storetest.NewMemory(t, storetest.Options{TTL: cfg.MessageTTL})
			h := stream.New(st, cfg, stream.Options{Logger: quiet()})
			ctx, cancel := context.WithCancel(context.Background())
			rec := newFlushRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, stream.Path+"?sessionId=busy", nil))
			}()
			defer func() { cancel(); <-done }()
			waitWrite(t, rec) // connected

			appendText := func(text string) time.Time {
				t.Helper()
				if _, err := st.Append(ctx, message.New(time.Now(), "busy", text), ""); err != nil {
					t.Fatal(err)
				}
				return time.Now()
			}
			sent := appendText("first")
			waitWrite(t, rec)
			for i := range burst {
				appendText("burst " + string(rune('a'+i)))
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, counts := rec.messageWrites(); sum(counts) == 1+burst {
					break
				}
				if time.Now().After(deadline) {
					_, counts := rec.messageWrites()
					t.Fatalf("got %d of %d messages in 10s", sum(counts), 1+burst)
				}
				waitWrite(t, rec)
			}
			at, counts := rec.messageWrites()
			if first := at[0].Sub(sent); counts[0] != 1 || first > tc.delay+time.Second {
				t.Fatalf("first message after a quiet spell: written %v after it was stored, in a write of %d messages; want alone and not held", first, counts[0])
			}
			gap := at[1].Sub(at[0])
			if tc.delay > 0 {
				if len(counts) != 2 || gap < tc.delay {
					t.Fatalf("FLUSH_DELAY %v: writes of %v messages, the second %v after the first; want the burst in one write, at least %v later", tc.delay, counts, gap, tc.delay)
				}
			} else if gap >= 400*time.Millisecond {
				t.Fatalf("FLUSH_DELAY 0: the burst was written %v after the first message; want no wait", gap)
			}
			t.Logf("FLUSH_DELAY %v: writes of %v messages, the second %v after the first", tc.delay, counts, gap)
		})
	}
}

func waitWrite(t *testing.T, rec *flushRecorder) {
	t.Helper()
	select {
	case <-rec.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("no write within 10s")
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
