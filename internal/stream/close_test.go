package stream_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/server"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

// closeStream posts the close request as navigator.sendBeacon does (a
// text/plain body, which the endpoint ignores) and returns the status and
// the JSON error, if any.
func closeStream(t *testing.T, base, query string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+stream.ClosePath+query, "text/plain;charset=UTF-8", strings.NewReader("bye"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

// ended waits until the stream's response ends, and says how long it took.
func (s *sub) ended(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return time.Since(start)
			}
		case <-timer.C:
			t.Fatalf("stream still open %v after the close", within)
		}
	}
}

func TestCloseBadRequests(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], nil)
	for _, tt := range []struct {
		name, query string
		status      int
	}{
		{"no id", "", 400},
		{"empty id", "?connectionId=", 400},
		{"short", "?connectionId=abc123", 400},
		{"upper case", "?connectionId=ABCDEF0123456789ABCDEF01", 400},
		{"not hex", "?connectionId=zzzzzzzzzzzzzzzzzzzzzzzz", 400},
		{"too long", "?connectionId=0123456789abcdef0123456789", 400},
		{"unknown but well formed", "?connectionId=0123456789abcdef01234567", 204},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := closeStream(t, e.srv.URL, tt.query)
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			if tt.status == 400 && !strings.Contains(msg, "connectionId") {
				t.Fatalf("error %q does not say what is wrong", msg)
			}
		})
	}
	resp, err := http.Get(e.srv.URL + stream.ClosePath + "?connectionId=0123456789abcdef01234567")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Fatalf("GET: %d, Allow %q; want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestCloseEndsTheStream: on both stores, a close request ends the stream it
// names and no other, within POLL_INTERVAL + 1 s, whether the stream runs in
// the instance that got the request (at once) or in another one (through
// the close signal in its partition, as on Lambda), and its lease is gone.
func TestCloseEndsTheStream(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		// A second instance on the same store: another Lambda environment.
		other := server.New(e.st, e.cfg, server.Options{Ingest: ingest.Options{Logger: quiet()}, Stream: stream.Options{Logger: quiet()}})
		otherSrv := httptest.NewServer(other)
		t.Cleanup(func() { other.Drain(); otherSrv.Close() })

		count := func(scope store.LeaseScope) int {
			t.Helper()
			n, err := e.st.CountLeasesOf(t.Context(), scope)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		sess := store.LeaseScope{SessionID: "closing"}
		a, bb, c := e.subscribe("closing", "", false), e.subscribe("closing", "", false), e.subscribe("", "", false)
		idA, idB, idC := a.connected(t).ConnectionID, bb.connected(t).ConnectionID, c.connected(t).ConnectionID
		if n := count(sess); n != 2 {
			t.Fatalf("session leases = %d, want 2", n)
		}
		bound := e.cfg.PollInterval + time.Second

		for _, tt := range []struct {
			name string
			via  string // the instance that gets the close request
			s    *sub
			id   string
		}{
			{"session stream, same instance", e.srv.URL, a, idA},
			{"broadcast stream, other instance", otherSrv.URL, c, idC},
		} {
			if status, msg := closeStream(t, tt.via, "?connectionId="+tt.id); status != http.StatusNoContent {
				t.Fatalf("%s: close answered %d %q, want 204", tt.name, status, msg)
			}
			took := tt.s.ended(t, bound)
			t.Logf("%s: stream ended %v after the 204", tt.name, took)
			if _, ok, err := e.st.LeaseOf(t.Context(), tt.id); ok || err != nil {
				t.Fatalf("%s: lease still there (%v)", tt.name, err)
			}
		}
		if n := count(sess); n != 1 {
			t.Fatalf("session leases after one close = %d, want 1", n)
		}
		// The other stream of the session is untouched and still delivers.
		m := e.post("closing", "still here")
		if got := bb.messages(t, 1, 5*time.Second); got[0].ID != m.ID {
			t.Fatalf("remaining stream got %+v", got)
		}
		// Closing a finished stream again is a no-op, from either instance.
		for _, via := range []string{e.srv.URL, otherSrv.URL} {
			if status, _ := closeStream(t, via, "?connectionId="+idA); status != http.StatusNoContent {
				t.Fatalf("second close answered %d, want 204", status)
			}
		}
		// The last one, from the other instance: the session's signal.
		if status, _ := closeStream(t, otherSrv.URL, "?connectionId="+idB); status != http.StatusNoContent {
			t.Fatal("close of the last stream failed")
		}
		bb.ended(t, bound)
		if n := count(sess); n != 0 {
			t.Fatalf("session leases after every close = %d, want 0", n)
		}
	})
}

// TestPresence: GET /api/webhook?sessionId= and a POST's listeners count the
// open streams exactly, several per session, on both stores; presence needs
// the webhook secret when one is set.
func TestPresence(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.WebhookSecrets = []string{"s3cret"} })
		type health struct {
			Status             string `json:"status"`
			ActiveConnections  int    `json:"activeConnections"`
			SessionConnections *int   `json:"sessionConnections"`
			Error              string `json:"error"`
		}
		get := func(query, secret string) (int, health) {
			t.Helper()
			req, _ := http.NewRequest("GET", e.srv.URL+"/api/webhook"+query, nil)
			if secret != "" {
				req.Header.Set("X-Webhook-Secret", secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var h health
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, h
		}
		listeners := func(session string) *int {
			t.Helper()
			body := `{"message":"count me"}`
			if session != "" {
				body = `{"message":"count me","sessionId":"` + session + `"}`
			}
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/webhook", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Webhook-Secret", "s3cret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var a struct {
				Success   bool `json:"success"`
				Listeners *int `json:"listeners"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 || !a.Success {
				t.Fatalf("POST: %d %+v %v", resp.StatusCode, a, err)
			}
			return a.Listeners
		}
		var subs []*sub
		for _, s := range []string{"p1", "p1", "p1", "p2", ""} {
			sb := e.subscribe(s, "", false)
			sb.connected(t)
			subs = append(subs, sb)
		}
		for _, tt := range []struct {
			session   string
			want, all int
		}{{"p1", 3, 5}, {"p2", 1, 5}, {"nobody", 0, 5}} {
			status, h := get("?sessionId="+tt.session, "s3cret")
			if status != 200 || h.Status != "ok" || h.ActiveConnections != tt.all || h.SessionConnections == nil || *h.SessionConnections != tt.want {
				t.Fatalf("presence of %s: %d %+v, want %d of %d", tt.session, status, h, tt.want, tt.all)
			}
			if n := listeners(tt.session); n == nil || *n != tt.want {
				t.Fatalf("POST to %s: listeners %v, want %d", tt.session, n, tt.want)
			}
		}
		if n := listeners(""); n == nil || *n != 5 {
			t.Fatalf("broadcast POST: listeners %v, want every stream (5)", n)
		}
		// Health alone stays open; presence does not.
		if status, h := get("", ""); status != 200 || h.ActiveConnections != 5 || h.SessionConnections != nil {
			t.Fatalf("health without secret: %d %+v", status, h)
		}
		for _, secret := range []string{"", "wrong"} {
			if status, h := get("?sessionId=p1", secret); status != 401 || h.Error == "" || h.SessionConnections != nil {
				t.Fatalf("presence with secret %q: %d %+v, want 401", secret, status, h)
			}
		}
		if status, h := get("?sessionId=bad%20id!", "s3cret"); status != 400 || !strings.Contains(h.Error, "sessionId") {
			t.Fatalf("presence of a malformed id: %d %+v, want 400 naming sessionId", status, h)
		}
		// A stream that leaves is no longer counted.
		subs[0].close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, h := get("?sessionId=p1", "s3cret"); h.SessionConnections != nil && *h.SessionConnections == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("presence of p1 did not drop to 2 after a stream left")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
