package stream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

var tokenSecret = []byte("a stream token secret of 32 bytes!")

func withTokens(c *config.Config) { c.StreamTokenSecrets = [][]byte{tokenSecret} }

func sign(t *testing.T, sid string, exp time.Time) string {
	t.Helper()
	keys, err := token.NewKeys([][]byte{tokenSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.Sign(token.Claims{SessionID: sid, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Every refusal of a stream: status, WWW-Authenticate on 401, a JSON
// sentence saying which, and no lease taken.
func TestStreamTokenRefusals(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], withTokens)
	hour := time.Now().Add(time.Hour)
	other, _ := token.NewKeys([][]byte{[]byte("another secret, also 32 bytes long")})
	forged, _ := other.Sign(token.Claims{SessionID: "a", ExpiresAt: hour})
	tests := []struct {
		name     string
		query    string
		header   map[string]string
		status   int
		sentence string
	}{
		{"no token", "sessionId=a", nil, 401, "token is required"},
		{"malformed", "sessionId=a&token=abc", nil, 401, "malformed"},
		{"signed with another secret", "token=" + forged, nil, 401, "signature"},
		{"expired", "token=" + sign(t, "a", time.Now().Add(-time.Hour)), nil, 401, "expired"},
		{"alg none", "token=eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDAsInNpZCI6ImEifQ.", nil, 401, "HS256"},
		{"bearer of another session", "sessionId=b", map[string]string{"Authorization": "Bearer " + sign(t, "a", hour)}, 403, "another session"},
		{"broadcast token asking for a session", "sessionId=a&token=" + sign(t, "", hour), nil, 403, "broadcasts only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+stream.Path+"?"+tt.query, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Success bool   `json:"success"`
				Error   string `json:"error"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || derr != nil || body.Success || !strings.Contains(body.Error, tt.sentence) {
				t.Fatalf("got %d %+v (%v), want %d saying %q", resp.StatusCode, body, derr, tt.status, tt.sentence)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: Bearer")
			}
			if n, err := e.st.CountLeases(context.Background()); err != nil || n != 0 {
				t.Fatalf("a refused stream left %d leases (%v)", n, err)
			}
		})
	}
}

// A valid token opens its session's stream from each of the three places
// it may come in; the session comes from the token when the query has none.
func TestStreamTokenSources(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { withTokens(c); c.ReplayCount = 0 })
	tok := sign(t, "tok-sess", time.Now().Add(time.Hour))
	sources := map[string]func(*http.Request){
		"header": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) },
		"cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: stream.TokenCookie, Value: tok}) },
		"query": func(r *http.Request) {
			q := r.URL.Query()
			q.Set("token", tok)
			r.URL.RawQuery = q.Encode()
		},
	}
	for name, edit := range sources {
		t.Run(name, func(t *testing.T) {
			s, err := e.trySubscribe("", "", false, edit)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.connected(t); c.SessionID == nil || *c.SessionID != "tok-sess" {
				t.Fatalf("connected for session %v, want the token's", c.SessionID)
			}
			p := e.post("tok-sess", "for the bearer")
			if got := s.messages(t, 1, 5*time.Second); got[0].ID != p.ID {
				t.Fatalf("got %+v", got)
			}
			s.close()
		})
	}
}

// The stream ends by plan no later than its token's expiry.
func TestStreamEndsByTokenExpiry(t *testing.T) {
	e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { withTokens(c); c.MaxStreamDuration = time.Minute })
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	s, err := e.trySubscribe("x", "", false, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+sign(t, "x", exp)) })
	if err != nil {
		t.Fatal(err)
	}
	s.connected(t)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				if late := time.Since(exp); late > time.Second {
					t.Fatalf("stream ended %v after its token expired", late)
				}
				return
			}
		case <-time.After(time.Until(exp) + 3*time.Second):
			t.Fatalf("stream still open %v after its token expired", time.Since(exp))
		}
	}
}

// Concurrent streams per source IP are capped across the store's leases; a
// closed stream frees its slot. With tokens, per session too.
func TestStreamCaps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, func(c *config.Config) { c.MaxStreamsPerIP = 2 })
		s1 := e.subscribe("a", "", false)
		s1.connected(t)
		s2 := e.subscribe("b", "", false)
		s2.connected(t)
		status, retry := refusedWith(t, e.srv.URL+stream.Path+"?sessionId=c", nil)
		if status != http.StatusTooManyRequests || retry == "" {
			t.Fatalf("third stream from one address: %d (Retry-After %q), want 429 with Retry-After", status, retry)
		}
		s1.close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s3, err := e.trySubscribe("c", "", false)
			if err == nil {
				s3.connected(t)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed stream did not free its slot: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("PerSession", func(t *testing.T) {
		e := newEnv(t, storetest.Backends()[0], func(c *config.Config) { withTokens(c); c.MaxStreamsPerSession = 1 })
		tok := sign(t, "one", time.Now().Add(time.Hour))
		bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
		s, err := e.trySubscribe("", "", false, bearer)
		if err != nil {
			t.Fatal(err)
		}
		s.connected(t)
		if status, _ := refusedWith(t, e.srv.URL+stream.Path+"?token="+url.QueryEscape(tok), nil); status != http.StatusTooManyRequests {
			t.Fatalf("second stream of a session capped at 1: %d, want 429", status)
		}
	})
}

func refusedWith(t *testing.T, u string, header map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}
