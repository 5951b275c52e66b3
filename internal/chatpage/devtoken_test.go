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
	h := DevTokenHandler(keys, time.Now)
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
			if err != nil || c.SessionID != sid || time.Until(c.ExpiresAt) > devTokenTTL {
				t.Fatalf("token grants %+v, %v", c, err)
			}
		})
	}
}
