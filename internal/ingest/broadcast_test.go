package ingest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/server"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

type event struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Message   string  `json:"message"`
	SessionID *string `json:"sessionId"`
}

// openStream reads the stream's events into a channel until the test ends.
func openStream(t *testing.T, ctx context.Context, url string) <-chan event {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	events := make(chan event, 16)
	go func() {
		defer resp.Body.Close()
		defer close(events)
		rd := sse.NewReader(resp.Body)
		for {
			e, err := rd.Next()
			if err != nil {
				return
			}
			var ev event
			if json.Unmarshal([]byte(e.Data), &ev) == nil {
				events <- ev
			}
		}
	}()
	return events
}

func next(t *testing.T, events <-chan event) event {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return event{}
}

// TestEmptySessionIDEndToEnd: an empty sessionId is a broadcast in a JSON
// body, a form body and the stream's query alike.
func TestEmptySessionIDEndToEnd(t *testing.T) {
	cfg := config.Defaults()
	cfg.RateLimitPerMinute, cfg.SessionRateLimitPerMinute = 0, 0
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(server.New(ingest.MemStore(t), cfg, server.Options{
		Ingest: ingest.Options{Logger: quiet}, Stream: stream.Options{Logger: quiet},
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	streams := map[string]<-chan event{}
	for name, query := range map[string]string{"empty sessionId=": "?sessionId=", "no sessionId": "", "session abc": "?sessionId=abc"} {
		streams[name] = openStream(t, ctx, srv.URL+stream.Path+query)
		ev := next(t, streams[name])
		wantSession := name == "session abc"
		if ev.Type != "connected" || (ev.SessionID != nil) != wantSession {
			t.Fatalf("%s: first event %+v, want connected with sessionId %v", name, ev, wantSession)
		}
	}

	posts := []struct{ contentType, body, text string }{
		{"application/json", `{"message":"json empty","sessionId":""}`, "json empty"},
		{"application/x-www-form-urlencoded", "message=form+empty&sessionId=", "form empty"},
		{"application/x-www-form-urlencoded", `{"message":"curl -d empty","sessionId":""}`, "curl -d empty"},
	}
	for _, p := range posts {
		resp, err := http.Post(srv.URL+ingest.Path, p.contentType, strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", p.body, resp.StatusCode, b)
		}
		for name, events := range streams {
			ev := next(t, events)
			if ev.Type != "webhook_message" || ev.Message != p.text || ev.SessionID != nil {
				t.Errorf("%s got %+v, want the broadcast %q with sessionId null", name, ev, p.text)
			}
		}
	}
}
