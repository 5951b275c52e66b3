package ingest_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

var mintSecret = []byte("a stream token secret of 32 bytes!")

func mintHandler(t *testing.T, tokens bool) *ingest.Handler {
	t.Helper()
	cfg := config.Defaults()
	cfg.WebhookSecrets = []string{"s3cret"}
	if tokens {
		cfg.StreamTokenSecrets = [][]byte{mintSecret}
	}
	return ingest.New(memstore.New(store.Options{}), cfg, ingest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestMintToken(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		tokens   bool
		method   string
		secret   string
		body     string
		status   int
		sentence string
		sid      string
		ttl      time.Duration
	}{
		{"tokens off", false, "POST", "s3cret", `{}`, 404, "not enabled", "", 0},
		{"GET", true, "GET", "s3cret", ``, 405, "", "", 0},
		{"no secret", true, "POST", "", `{}`, 401, "Missing X-Webhook-Secret", "", 0},
		{"wrong secret", true, "POST", "nope", `{}`, 401, "Invalid webhook secret", "", 0},
		{"not JSON", true, "POST", "s3cret", `sessionId=a`, 400, "must be JSON", "", 0},
		{"bad session", true, "POST", "s3cret", `{"sessionId":"a b"}`, 400, "sessionId", "", 0},
		{"ttl zero", true, "POST", "s3cret", `{"ttlSeconds":0}`, 400, "ttlSeconds", "", 0},
		{"ttl over a day", true, "POST", "s3cret", `{"ttlSeconds":86401}`, 400, "ttlSeconds", "", 0},
		{"ttl not a number", true, "POST", "s3cret", `{"ttlSeconds":"60"}`, 400, "ttlSeconds", "", 0},
		{"broadcast, default ttl", true, "POST", "s3cret", ``, 200, "", "", time.Hour},
		{"session, 60 s", true, "POST", "s3cret", `{"sessionId":"abc","ttlSeconds":60}`, 200, "", "abc", time.Minute},
		{"null session", true, "POST", "s3cret", `{"sessionId":null,"ttlSeconds":86400}`, 200, "", "", 24 * time.Hour},
	}
	keys, _ := token.NewKeys([][]byte{mintSecret})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, ingest.TokenPath, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.secret != "" {
				req.Header.Set("X-Webhook-Secret", tt.secret)
			}
			w := httptest.NewRecorder()
			mintHandler(t, tt.tokens).ServeHTTP(w, req)
			var out struct {
				Success   bool    `json:"success"`
				Error     string  `json:"error"`
				Token     string  `json:"token"`
				ExpiresAt int64   `json:"expiresAt"`
				SessionID *string `json:"sessionId"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != tt.status || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, %q (%v); want %d JSON", w.Code, w.Body, err, tt.status)
			}
			if tt.status != 200 {
				if out.Success || !strings.Contains(out.Error, tt.sentence) || out.Token != "" {
					t.Fatalf("%+v; want an error saying %q", out, tt.sentence)
				}
				return
			}
			c, err := keys.Verify(out.Token, time.Now())
			if err != nil || c.SessionID != tt.sid || c.ExpiresAt.UnixMilli() != out.ExpiresAt {
				t.Fatalf("minted %+v verifies as %+v, %v", out, c, err)
			}
			if got := time.UnixMilli(out.ExpiresAt).Sub(now); got < tt.ttl-2*time.Second || got > tt.ttl+time.Second {
				t.Fatalf("token lives %v, want %v", got, tt.ttl)
			}
			if (out.SessionID == nil) != (tt.sid == "") {
				t.Fatalf("sessionId in the answer = %v, want %q", out.SessionID, tt.sid)
			}
		})
	}
}
