package ingest

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/logkey"
)

func acceptedOf(t *testing.T, w *httptest.ResponseRecorder) accepted {
	t.Helper()
	var a accepted
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &a) != nil || !a.Success || a.MessageID == "" {
		t.Fatalf("answer %d %s, want 200 with a messageId", w.Code, w.Body)
	}
	if a.Listeners == nil {
		t.Fatalf("answer %s has no listeners count", w.Body)
	}
	a.Listeners = nil // compared by the presence tests; here answers are compared whole
	return a
}

// TestIdempotencyKeyReuse: a key answers its first result for the same
// message only; for another message it is a 422 that stores nothing and
// leaves the key's record as it was.
func TestIdempotencyKeyReuse(t *testing.T) {
	key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name         string
		first, again request
		status       int    // of again
		errHas       string // for a 422
		stored       int
	}{
		{"same key, same message", request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")},
			request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")}, 200, "", 1},
		{"same message as a form", request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")},
			request{contentType: form, body: "message=hi&sessionId=s1", header: key("k1")}, 200, "", 1},
		{"same message gzipped", request{body: `{"message":"hi"}`, header: key("k1")},
			request{body: gzipped(t, `{"message":"hi"}`), header: map[string]string{"Idempotency-Key": "k1", "Content-Encoding": "gzip"}}, 200, "", 1},
		{"null and absent session are one broadcast", request{body: `{"message":"hi"}`, header: key("k1")},
			request{body: `{"message":"hi","sessionId":null}`, header: key("k1")}, 200, "", 1},
		{"other text", request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")},
			request{body: `{"message":"bye","sessionId":"s1"}`, header: key("k1")}, 422, "Idempotency-Key was already used for a different message", 1},
		{"text differs in whitespace only", request{body: `{"message":"hi"}`, header: key("k1")},
			request{body: `{"message":"hi "}`, header: key("k1")}, 422, "already used for a different message", 1},
		{"other session", request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")},
			request{body: `{"message":"hi","sessionId":"s2"}`, header: key("k1")}, 422, "already used for a different message", 1},
		{"session, then broadcast", request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")},
			request{body: `{"message":"hi"}`, header: key("k1")}, 422, "already used for a different message", 1},
		{"broadcast, then session", request{body: `{"message":"hi"}`, header: key("k1")},
			request{body: `{"message":"hi","sessionId":"s1"}`, header: key("k1")}, 422, "already used for a different message", 1},
		{"webhook-id as the key", request{body: `{"message":"hi"}`, header: map[string]string{"webhook-id": "msg_1"}},
			request{body: `{"message":"bye"}`, header: map[string]string{"webhook-id": "msg_1"}}, 422, "webhook-id was already used for a different message", 1},
		{"other key, same message", request{body: `{"message":"hi"}`, header: key("k1")},
			request{body: `{"message":"hi"}`, header: key("k2")}, 200, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec, _ := newTestHandler(t, testConfig(), time.Now)
			first := acceptedOf(t, tt.first.do(h))
			w := tt.again.do(h)
			if w.Code != tt.status {
				t.Fatalf("second request: %d %s, want %d", w.Code, w.Body, tt.status)
			}
			switch {
			case tt.status == 422:
				if msg := decodeError(t, w); !strings.Contains(msg, tt.errHas) || !strings.Contains(msg, "nothing was stored") {
					t.Fatalf("error %q, want it to say %q and that nothing was stored", msg, tt.errHas)
				}
				// The key's record is untouched: the first request, retried,
				// still gets its first answer.
				if retry := acceptedOf(t, tt.first.do(h)); retry != first {
					t.Fatalf("retry of the first request after a 422 answered %+v, first %+v", retry, first)
				}
			case tt.stored == 1:
				if again := acceptedOf(t, w); again != first {
					t.Fatalf("same key and message answered %+v, first %+v", again, first)
				}
			}
			if rec.count() != tt.stored {
				t.Fatalf("%d messages stored, want %d", rec.count(), tt.stored)
			}
		})
	}
}

// TestSignedReplayIgnoresIdempotencyKey: with WEBHOOK_SIGNING_SECRET the key
// is the signed webhook-id, so replaying a captured request with an added
// or changed Idempotency-Key (which the signature does not cover) stores
// nothing new.
func TestSignedReplayIgnoresIdempotencyKey(t *testing.T) {
	now := time.Now()
	body := `{"message":"signed once","sessionId":"s1"}`
	signed := func(id string, extra map[string]string) request {
		hd := map[string]string{
			"webhook-id":        id,
			"webhook-timestamp": fmt.Sprint(now.Unix()),
			"webhook-signature": Sign(signingKey, id, now.Unix(), []byte(body)),
		}
		for k, v := range extra {
			hd[k] = v
		}
		return request{body: body, header: hd}
	}
	tests := []struct {
		name   string
		replay request
		stored int
	}{
		{"as captured", signed("msg_1", nil), 1},
		{"Idempotency-Key added", signed("msg_1", map[string]string{"Idempotency-Key": "new-1"}), 1},
		{"Idempotency-Key changed", signed("msg_1", map[string]string{"Idempotency-Key": "new-2"}), 1},
		{"invalid Idempotency-Key added", signed("msg_1", map[string]string{"Idempotency-Key": "caf\u00e9"}), 1},
		{"another signed webhook-id", signed("msg_2", map[string]string{"Idempotency-Key": "k"}), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.SigningSecret = signingKey
			h, rec, _ := newTestHandler(t, cfg, func() time.Time { return now })
			first := acceptedOf(t, signed("msg_1", map[string]string{"Idempotency-Key": "k"}).do(h))
			again := acceptedOf(t, tt.replay.do(h))
			if tt.stored == 1 && again != first {
				t.Fatalf("replay answered %+v, first %+v", again, first)
			}
			if rec.count() != tt.stored {
				t.Fatalf("%d messages stored, want %d", rec.count(), tt.stored)
			}
		})
	}
}

// TestSecretRotation: WEBHOOK_SECRET as a comma list accepts any one entry.
func TestSecretRotation(t *testing.T) {
	cfg := testConfig()
	loaded, err := config.Load(config.Webhook, func(k string) string {
		if k == "WEBHOOK_SECRET" {
			return " new-s3cret , old-s3cret ,"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.WebhookSecrets = loaded.WebhookSecrets
	tests := []struct {
		name, header string
		status       int
		errHas       string
	}{
		{"new", "new-s3cret", 200, ""},
		{"old", "old-s3cret", 200, ""},
		{"missing", "", 401, "Missing X-Webhook-Secret"},
		{"neither", "older-s3cret", 401, "Invalid webhook secret"},
		{"prefix of one", "new-s3cr", 401, "Invalid webhook secret"},
		{"the list itself", "new-s3cret,old-s3cret", 401, "Invalid webhook secret"},
		{"with the spaces trimmed from the list", " new-s3cret ", 401, "Invalid webhook secret"},
		{"empty entry", ",", 401, "Invalid webhook secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec, logs := newTestHandler(t, cfg, time.Now)
			hd := map[string]string{}
			if tt.header != "" {
				hd["X-Webhook-Secret"] = tt.header
			}
			w := request{body: `{"message":"hi"}`, header: hd}.do(h)
			if w.Code != tt.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tt.status)
			}
			wantStored := 1
			if tt.status != 200 {
				wantStored = 0
				if msg := decodeError(t, w); !strings.Contains(msg, tt.errHas) {
					t.Fatalf("error %q, want it to mention %q", msg, tt.errHas)
				}
			}
			if rec.count() != wantStored {
				t.Fatalf("%d stored, want %d", rec.count(), wantStored)
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Fatalf("log contains a secret: %s", logs)
			}
		})
	}
}

// TestForwardedForCannotDodgeRateLimit: behind a trusted proxy, the source
// is the entry the proxy appended; varying what the client wrote before it
// does not make a new source.
func TestForwardedForCannotDodgeRateLimit(t *testing.T) {
	tests := []struct {
		name   string
		xff    []string // the second request's header lines
		status int
	}{
		{"same client, other leftmost entry", []string{"192.0.2.99, 198.51.100.7"}, 429},
		{"same client, more entries", []string{"192.0.2.1, 192.0.2.2, 192.0.2.3,198.51.100.7"}, 429},
		{"same client, entries on another line", []string{"192.0.2.50", "198.51.100.7"}, 429},
		{"same client, no entries before", []string{"198.51.100.7"}, 429},
		{"another client", []string{"192.0.2.99, 198.51.100.8"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TrustProxyHeaders = true
			cfg.RateLimitPerMinute = 1
			h, rec, _ := newTestHandler(t, cfg, time.Now)
			post := func(xff ...string) *httptest.ResponseRecorder {
				r := httptest.NewRequest("POST", Path, strings.NewReader(`{"message":"hi"}`))
				r.RemoteAddr = "10.0.0.1:5555" // the proxy
				for _, line := range xff {
					r.Header.Add("X-Forwarded-For", line)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			acceptedOf(t, post("192.0.2.1, 198.51.100.7"))
			w := post(tt.xff...)
			if w.Code != tt.status {
				t.Fatalf("second request: %d %s, want %d", w.Code, w.Body, tt.status)
			}
			wantStored := 2
			if tt.status == 429 {
				wantStored = 1
				if msg := decodeError(t, w); !strings.Contains(msg, "from this source") {
					t.Fatalf("error %q, want the per-source limit", msg)
				}
			}
			if rec.count() != wantStored {
				t.Fatalf("%d stored, want %d", rec.count(), wantStored)
			}
		})
	}
}

// TestSessionIDNotLogged: the request log carries a keyed hash of the
// session id (internal/logkey), never the id.
func TestSessionIDNotLogged(t *testing.T) {
	const session = "secret-session-42"
	tests := []struct {
		name, logKey string
		req          request
		status       int
		ipLimit      int
	}{
		{"accepted", "k3y", request{body: `{"message":"hi","sessionId":"` + session + `"}`}, 200, 0},
		{"accepted, no key set", "", request{body: `{"message":"hi","sessionId":"` + session + `"}`}, 200, 0},
		{"form", "k3y", request{contentType: "application/x-www-form-urlencoded", body: "message=hi&sessionId=" + session}, 200, 0},
		{"rejected message", "k3y", request{body: `{"message":"","sessionId":"` + session + `"}`}, 400, 0},
		{"rate limited", "k3y", request{body: `{"message":"hi","sessionId":"` + session + `"}`}, 429, 1},
		{"key reused", "k3y", request{body: `{"message":"other","sessionId":"` + session + `"}`, header: map[string]string{"Idempotency-Key": "k"}}, 422, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.LogSessionKey = tt.logKey
			cfg.RateLimitPerMinute = tt.ipLimit
			h, _, logs := newTestHandler(t, cfg, time.Now)
			switch tt.status {
			case 429:
				acceptedOf(t, request{body: `{"message":"first"}`}.do(h))
			case 422:
				acceptedOf(t, request{body: `{"message":"hi","sessionId":"` + session + `"}`, header: map[string]string{"Idempotency-Key": "k"}}.do(h))
			}
			logs.Reset()
			if w := tt.req.do(h); w.Code != tt.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tt.status)
			}
			if strings.Contains(logs.String(), session) {
				t.Fatalf("the log carries the session id: %s", logs)
			}
			mac := hmac.New(sha256.New, []byte(tt.logKey))
			mac.Write([]byte(session))
			want := hex.EncodeToString(mac.Sum(nil))[:12]
			if want != logkey.Session(tt.logKey, session) {
				t.Fatalf("logkey.Session is not the first 12 hex of HMAC-SHA256(key, sessionId)")
			}
			sc := bufio.NewScanner(logs)
			lines := 0
			for sc.Scan() {
				var line map[string]any
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatalf("log line %q: %v", sc.Text(), err)
				}
				if line["msg"] != "webhook request" {
					continue
				}
				lines++
				if line["session"] != want {
					t.Fatalf("log line %s: session %v, want %s", sc.Text(), line["session"], want)
				}
				if _, ok := line["sessionId"]; ok {
					t.Fatalf("log line %s has a sessionId field", sc.Text())
				}
			}
			if lines != 1 {
				t.Fatalf("%d request log lines, want 1: %s", lines, logs)
			}
		})
	}
	// A broadcast has no session to log.
	h, _, logs := newTestHandler(t, testConfig(), time.Now)
	acceptedOf(t, request{body: `{"message":"hi"}`}.do(h))
	if strings.Contains(logs.String(), `"session"`) {
		t.Fatalf("a broadcast logged a session: %s", logs)
	}
}
