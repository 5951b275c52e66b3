package chatpage

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/token"
)

func TestDevToken(t *testing.T) {
	keys, err := token.NewKeys([][]byte{[]byte("a stream token secret of 32 bytes!")})
	if err != nil {
		t.Fatal(err)
	}
	h := DevTokenHandler(keys, time.Now, 0)
	const sid = "0b9e4c1a-7f5d-4e2a-9c3b-1d2e3f4a5b6c"
	tests := []struct {
		name   string
		method string
		remote string
		header map[string]string
		body   string
		status int
	}{
		{"the page itself", "POST", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "same-origin"}, `{"sessionId":"` + sid + `"}`, 200},
		{"by Origin", "POST", "[::1]:5000", map[string]string{"Origin": "http://127.0.0.1:3000"}, `{"sessionId":"` + sid + `"}`, 200},
		{"another machine", "POST", "192.0.2.8:5000", map[string]string{"Sec-Fetch-Site": "same-origin"}, `{"sessionId":"` + sid + `"}`, 403},
		{"another site in the same browser", "POST", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, `{"sessionId":"` + sid + `"}`, 403},
		{"no browser headers (curl)", "POST", "127.0.0.1:5000", nil, `{"sessionId":"` + sid + `"}`, 403},
		{"GET", "GET", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "same-origin"}, ``, 405},
		{"no session", "POST", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "same-origin"}, `{}`, 400},
		{"bad session", "POST", "127.0.0.1:5000", map[string]string{"Sec-Fetch-Site": "same-origin"}, `{"sessionId":"a b"}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:3000"+DevTokenPath, strings.NewReader(tt.body))
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var out struct {
				Token string `json:"token"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != tt.status {
				t.Fatalf("status %d %q, want %d", w.Code, w.Body, tt.status)
			}
			if tt.status != http.StatusOK {
				if out.Token != "" || out.Error == "" {
					t.Fatalf("refusal %+v: want a sentence and no token", out)
				}
				return
			}
			c, err := keys.Verify(out.Token, time.Now())
			if err != nil || c.SessionID != sid || time.Until(c.ExpiresAt) > DefaultDevTokenTTL || time.Until(c.ExpiresAt) < DefaultDevTokenTTL-2*time.Second {
				t.Fatalf("token grants %+v, %v", c, err)
			}
		})
	}
}

// TestDevTokenTTL: the lifetime given is the one minted; none is the default.
func TestDevTokenTTL(t *testing.T) {
	keys, err := token.NewKeys([][]byte{[]byte("a stream token secret of 32 bytes!")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ttl, want time.Duration
	}{{0, DefaultDevTokenTTL}, {-time.Second, DefaultDevTokenTTL}, {40 * time.Second, 40 * time.Second}} {
		h := DevTokenHandler(keys, func() time.Time { return now }, tt.ttl)
		req := httptest.NewRequest("POST", "http://127.0.0.1:3000"+DevTokenPath, strings.NewReader(`{"sessionId":"s1"}`))
		req.RemoteAddr = "127.0.0.1:5000"
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var out struct {
			Token     string `json:"token"`
			ExpiresAt int64  `json:"expiresAt"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != http.StatusOK {
			t.Fatalf("ttl %s: %d %s", tt.ttl, w.Code, w.Body)
		}
		c, err := keys.Verify(out.Token, now)
		if err != nil || !c.ExpiresAt.Equal(now.Add(tt.want)) || out.ExpiresAt != now.Add(tt.want).UnixMilli() {
			t.Errorf("ttl %s: token expires %s (answer %d), %v; want %s", tt.ttl, c.ExpiresAt, out.ExpiresAt, err, now.Add(tt.want))
		}
	}
}

// A name that an attacker's DNS points at 127.0.0.1 makes a hostile page
// "same origin" with the adapter: the page must be addressed by a loopback
// name for a token.
func TestDevTokenRefusesRebinding(t *testing.T) {
	keys, _ := token.NewKeys([][]byte{[]byte("a stream token secret of 32 bytes!")})
	h := DevTokenHandler(keys, time.Now, 0)
	for host, want := range map[string]int{"evil.example:3000": 403, "localhost:3000": 200, "127.0.0.1:3000": 200, "[::1]:3000": 200} {
		req := httptest.NewRequest("POST", "http://"+host+DevTokenPath, strings.NewReader(`{"sessionId":"0b9e4c1a-7f5d-4e2a-9c3b-1d2e3f4a5b6c"}`))
		req.RemoteAddr = "127.0.0.1:5000"
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("Host %s: %d %s, want %d", host, w.Code, w.Body, want)
		}
	}
}
