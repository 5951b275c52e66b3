package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
)

// recorder wraps a store and counts appends that stored something.
type recorder struct {
	Store
	mu     sync.Mutex
	stored []message.Message
}

func (r *recorder) Append(ctx context.Context, m message.Message, key string) (store.AppendResult, error) {
	res, err := r.Store.Append(ctx, m, key)
	if err == nil && !res.Replayed {
		r.mu.Lock()
		r.stored = append(r.stored, res.Message)
		r.mu.Unlock()
	}
	return res, err
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stored)
}

var signingKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig() config.Config {
	c := config.Defaults()
	c.RateLimitPerMinute = 0
	c.SessionRateLimitPerMinute = 0
	return c
}

func newTestHandler(t testing.TB, cfg config.Config, now func() time.Time) (*Handler, *recorder, *bytes.Buffer) {
	t.Helper()
	rec := &recorder{Store: memstore.New(store.Options{Now: now})}
	logs := &bytes.Buffer{}
	h := New(rec, cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: now})
	return h, rec, logs
}

type request struct {
	method, contentType, body string
	header                    map[string]string
}

func (q request) do(h http.Handler) *httptest.ResponseRecorder {
	method := q.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, Path, strings.NewReader(q.body))
	if q.contentType != "-" {
		ct := q.contentType
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeError(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Success *bool  `json:"success"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body.String(), err)
	}
	if body.Success == nil || *body.Success || body.Error == "" {
		t.Fatalf("error body = %s, want {\"success\":false,\"error\":...}", w.Body.String())
	}
	if !strings.HasSuffix(strings.TrimSpace(body.Error), ".") {
		t.Fatalf("error %q is not a sentence", body.Error)
	}
	return body.Error
}

func TestBadInput(t *testing.T) {
	now := time.Now()
	signed := func(body string, ts time.Time, key []byte) map[string]string {
		return map[string]string{
			"webhook-id":        "msg_1",
			"webhook-timestamp": fmt.Sprint(ts.Unix()),
			"webhook-signature": Sign(key, "msg_1", ts.Unix(), []byte(body)),
		}
	}
	long := strings.Repeat("é", 4001)
	tests := []struct {
		name    string
		req     request
		secret  bool
		signing bool
		status  int
		errHas  string
	}{
		{"empty body", request{body: ""}, false, false, 400, "empty"},
		{"whitespace body", request{body: "  \n"}, false, false, 400, "empty"},
		{"not json", request{body: "hello"}, false, false, 400, "not valid JSON"},
		{"truncated json", request{body: `{"message":"hi"`}, false, false, 400, "not valid JSON"},
		{"json array", request{body: `["hi"]`}, false, false, 400, "JSON object"},
		{"json string", request{body: `"hi"`}, false, false, 400, "JSON object"},
		{"json number", request{body: `42`}, false, false, 400, "JSON object"},
		{"json null", request{body: `null`}, false, false, 400, "JSON object"},
		{"empty object", request{body: `{}`}, false, false, 400, "'message' is required"},
		{"message empty", request{body: `{"message":""}`}, false, false, 400, "'message' is required"},
		{"message blank", request{body: `{"message":"   "}`}, false, false, 400, "'message' is required"},
		{"message number", request{body: `{"message":123}`}, false, false, 400, "must be a string"},
		{"message null", request{body: `{"message":null}`}, false, false, 400, "'message' is required"},
		{"message true", request{body: `{"message":true}`}, false, false, 400, "must be a string"},
		{"message object", request{body: `{"message":{}}`}, false, false, 400, "must be a string"},
		{"invalid utf8", request{body: "{\"message\":\"a\xffb\"}"}, false, false, 400, "UTF-8"},
		{"4001 characters", request{body: `{"message":"` + long + `"}`}, false, false, 400, "too long"},
		{"session with space", request{body: `{"message":"hi","sessionId":"a b"}`}, false, false, 400, "sessionId"},
		{"session with slash", request{body: `{"message":"hi","sessionId":"a/b"}`}, false, false, 400, "sessionId"},
		{"session 129 chars", request{body: `{"message":"hi","sessionId":"` + strings.Repeat("s", 129) + `"}`}, false, false, 400, "sessionId"},
		{"session number", request{body: `{"message":"hi","sessionId":7}`}, false, false, 400, "sessionId"},
		{"wrong content type", request{contentType: "text/plain", body: `{"message":"hi"}`}, false, false, 415, "Content-Type"},
		{"xml content type", request{contentType: "application/xml", body: `<m/>`}, false, false, 415, "Content-Type"},
		{"oversize body", request{body: `{"message":"` + strings.Repeat("a", 70000) + `"}`}, false, false, 413, "larger than"},
		{"duplicate keys", request{body: `{"message":"a","message":"b"}`}, false, false, 400, "Duplicate field 'message'"},
		{"duplicate session", request{body: `{"message":"a","sessionId":"x","sessionId":"y"}`}, false, false, 400, "Duplicate"},
		{"trailing garbage", request{body: `{"message":"hi"} trailing`}, false, false, 400, "after the JSON object"},
		{"two objects", request{body: `{"message":"hi"}{"message":"again"}`}, false, false, 400, "after the JSON object"},
		{"form missing message", request{contentType: "application/x-www-form-urlencoded", body: "sessionId=abc"}, false, false, 400, "'message' is required"},
		{"form blank message", request{contentType: "application/x-www-form-urlencoded", body: "message=+++"}, false, false, 400, "'message' is required"},
		{"form bad session", request{contentType: "application/x-www-form-urlencoded", body: "message=hi&sessionId=a%2Fb"}, false, false, 400, "sessionId"},
		{"secret missing", request{body: `{"message":"hi"}`}, true, false, 401, "Missing X-Webhook-Secret"},
		{"secret wrong", request{body: `{"message":"hi"}`, header: map[string]string{"X-Webhook-Secret": "nope"}}, true, false, 401, "Invalid webhook secret"},
		{"signature missing", request{body: `{"message":"hi"}`}, false, true, 401, "Missing webhook-id"},
		{"signature stale", request{body: `{"message":"hi"}`, header: signed(`{"message":"hi"}`, now.Add(-6*time.Minute), signingKey)}, false, true, 401, "Stale"},
		{"signature future", request{body: `{"message":"hi"}`, header: signed(`{"message":"hi"}`, now.Add(6*time.Minute), signingKey)}, false, true, 401, "too far in the future"},
		{"signature forged", request{body: `{"message":"hi"}`, header: signed(`{"message":"hi"}`, now, []byte("wrong key"))}, false, true, 401, "Invalid webhook signature"},
		{"signature of other body", request{body: `{"message":"hi"}`, header: signed(`{"message":"bye"}`, now, signingKey)}, false, true, 401, "Invalid webhook signature"},
		{"bad idempotency key", request{body: `{"message":"hi"}`, header: map[string]string{"Idempotency-Key": "caf\u00e9"}}, false, false, 400, "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.secret {
				cfg.WebhookSecrets = []string{"s3cret"}
			}
			if tt.signing {
				cfg.SigningSecret = signingKey
			}
			h, rec, logs := newTestHandler(t, cfg, func() time.Time { return now })
			w := tt.req.do(h)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			if msg := decodeError(t, w); !strings.Contains(msg, tt.errHas) {
				t.Fatalf("error %q, want it to mention %q", msg, tt.errHas)
			}
			if n := rec.count(); n != 0 {
				t.Fatalf("%d messages stored for a rejected request", n)
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Fatalf("log contains the secret: %s", logs)
			}
		})
	}
}

func TestAccepted(t *testing.T) {
	now := time.Now()
	signedBody := `{"message":"signed"}`
	tests := []struct {
		name        string
		req         request
		secret      bool
		signing     bool
		wantText    string
		wantSession string
	}{
		{"guide example", request{body: `{"message": "Hello from external service!"}`}, false, false, "Hello from external service!", ""},
		{"no content type", request{contentType: "-", body: `{"message":"hi"}`}, false, false, "hi", ""},
		{"charset param", request{contentType: "application/json; charset=utf-8", body: `{"message":"hi"}`}, false, false, "hi", ""},
		{"session", request{body: `{"message":"hi","sessionId":"abc-123"}`}, false, false, "hi", "abc-123"},
		{"null session is broadcast", request{body: `{"message":"hi","sessionId":null}`}, false, false, "hi", ""},
		{"unknown fields ignored", request{body: `{"message":"hi","extra":{"a":[1,2]},"n":1}`}, false, false, "hi", ""},
		{"byte exact", request{body: `{"message":"  tabs\tand\nnewlines <b>&amp; 😀  "}`}, false, false, "  tabs\tand\nnewlines <b>&amp; 😀  ", ""},
		{"4000 multibyte characters", request{body: `{"message":"` + strings.Repeat("😀", 4000) + `"}`}, false, false, strings.Repeat("😀", 4000), ""},
		{"form", request{contentType: "application/x-www-form-urlencoded", body: url.Values{"message": {"from zapier"}, "sessionId": {"z1"}}.Encode()}, false, false, "from zapier", "z1"},
		{"form empty session is broadcast", request{contentType: "application/x-www-form-urlencoded", body: "message=hi&sessionId="}, false, false, "hi", ""},
		{"secret right", request{body: `{"message":"hi"}`, header: map[string]string{"X-Webhook-Secret": "s3cret"}}, true, false, "hi", ""},
		{"signature valid", request{body: signedBody, header: map[string]string{
			"webhook-id": "msg_2", "webhook-timestamp": fmt.Sprint(now.Unix()),
			"webhook-signature": "v1,AAAA " + Sign(signingKey, "msg_2", now.Unix(), []byte(signedBody)),
		}}, false, true, "signed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.secret {
				cfg.WebhookSecrets = []string{"s3cret"}
			}
			if tt.signing {
				cfg.SigningSecret = signingKey
			}
			h, rec, logs := newTestHandler(t, cfg, func() time.Time { return now })
			w := tt.req.do(h)
			if w.Code != 200 {
				t.Fatalf("status = %d (%s)", w.Code, w.Body)
			}
			var got accepted
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || !got.Success {
				t.Fatalf("body %s", w.Body)
			}
			if rec.count() != 1 {
				t.Fatalf("%d stored", rec.count())
			}
			m := rec.stored[0]
			if m.Text != tt.wantText || m.SessionID != tt.wantSession || m.ID != got.MessageID || m.Timestamp != got.Timestamp {
				t.Fatalf("stored %+v, response %+v", m, got)
			}
			if strings.Contains(logs.String(), tt.wantText) && len(tt.wantText) > 3 {
				t.Fatalf("the log contains the message body")
			}
		})
	}
}

func TestRoutesAndMethods(t *testing.T) {
	h, _, _ := newTestHandler(t, testConfig(), time.Now)
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"PUT", Path, 405, "GET, HEAD, POST"},
		{"DELETE", Path, 405, "GET, HEAD, POST"},
		{"PATCH", Path, 405, "GET, HEAD, POST"},
		{"GET", "/api/webhooks", 404, ""},
		{"POST", "/api/webhook/", 404, ""},
		{"GET", "/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
			if w.Code != tt.status || w.Header().Get("Allow") != tt.allow {
				t.Fatalf("status %d Allow %q, want %d %q", w.Code, w.Header().Get("Allow"), tt.status, tt.allow)
			}
			decodeError(t, w)
		})
	}
}

func TestHealth(t *testing.T) {
	st := memstore.New(store.Options{})
	h := New(st, testConfig(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if err := st.PutLease(ctx, store.Lease{ID: id, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	w := request{method: "GET"}.do(h)
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"status":"ok","activeConnections":3}` {
		t.Fatalf("health = %d %s", w.Code, w.Body)
	}
}

// failing is a store whose every operation fails as given.
type failing struct{ err error }

func (f failing) Append(context.Context, message.Message, string) (store.AppendResult, error) {
	return store.AppendResult{}, f.err
}
func (f failing) IncrementCounter(context.Context, string, time.Time) (int64, error) { return 0, f.err }
func (f failing) CountLeases(context.Context) (int, error)                           { return 0, f.err }
func (f failing) CountLeasesOf(context.Context, store.LeaseScope) (int, error) {
	return 0, f.err
}

func TestStoreFaults(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"unavailable", store.Unavailable(errors.New("dial tcp: connection refused")), 503},
		{"hole closed", store.ErrHoleClosed, 503},
		{"unexpected", errors.New("table webhook-relay not found"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(failing{tt.err}, testConfig(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			w := request{body: `{"message":"hi"}`}.do(h)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			msg := decodeError(t, w)
			if strings.Contains(msg, "refused") || strings.Contains(msg, "webhook-relay") {
				t.Fatalf("error %q leaks internals", msg)
			}
			if tt.status == 503 && w.Header().Get("Retry-After") == "" {
				t.Fatalf("503 without Retry-After")
			}
			hw := request{method: "GET"}.do(h)
			if hw.Code != 503 || !strings.Contains(hw.Body.String(), `"status":"error"`) {
				t.Fatalf("health with a failing store = %d %s", hw.Code, hw.Body)
			}
		})
	}
}

func TestIdempotentRetries(t *testing.T) {
	h, rec, _ := newTestHandler(t, testConfig(), time.Now)
	const n = 20
	bodies := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := request{body: `{"message":"once","sessionId":"s"}`, header: map[string]string{"Idempotency-Key": "retry-1"}}.do(h)
			if w.Code != 200 {
				t.Errorf("retry %d: %d %s", i, w.Code, w.Body)
			}
			bodies[i] = w.Body.String()
		}()
	}
	wg.Wait()
	for i := range n {
		if bodies[i] != bodies[0] {
			t.Fatalf("retry %d answered %s, first answered %s", i, bodies[i], bodies[0])
		}
	}
	if rec.count() != 1 {
		t.Fatalf("%d messages stored for one idempotency key", rec.count())
	}
	// webhook-id is the key when Idempotency-Key is absent.
	for range 2 {
		request{body: `{"message":"std"}`, header: map[string]string{"webhook-id": "msg_x"}}.do(h)
	}
	if rec.count() != 2 {
		t.Fatalf("webhook-id not used as an idempotency key: %d stored", rec.count())
	}
}

func TestManyConcurrentPosts(t *testing.T) {
	h, rec, _ := newTestHandler(t, testConfig(), time.Now)
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				w := request{body: fmt.Sprintf(`{"message":"m %d %d","sessionId":"s%d"}`, g, i, g%5)}.do(h)
				var a accepted
				if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &a) != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				ids[a.MessageID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || len(ids) != 1000 || rec.count() != 1000 {
		t.Fatalf("failed %d, distinct ids %d, stored %d; want 0, 1000, 1000", failed.Load(), len(ids), rec.count())
	}
}

func TestRateLimit(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 29, 10, 0, 10, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tests := []struct {
		name                string
		ipLimit, perSession int
		body                func(i int) string
		remote              func(i int) string
	}{
		{"per source ip", 5, 0, func(i int) string { return fmt.Sprintf(`{"message":"%d","sessionId":"s%d"}`, i, i) }, func(int) string { return "192.0.2.1:1234" }},
		{"per target session", 0, 5, func(i int) string { return `{"message":"x","sessionId":"same"}` }, func(i int) string { return fmt.Sprintf("192.0.2.%d:1", i+1) }},
		{"broadcast is one target", 0, 5, func(i int) string { return `{"message":"x"}` }, func(i int) string { return fmt.Sprintf("192.0.2.%d:1", i+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RateLimitPerMinute, cfg.SessionRateLimitPerMinute = tt.ipLimit, tt.perSession
			h, rec, _ := newTestHandler(t, cfg, clock)
			post := func(i int) *httptest.ResponseRecorder {
				r := httptest.NewRequest("POST", Path, strings.NewReader(tt.body(i)))
				r.RemoteAddr = tt.remote(i)
				r.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i)) // not trusted
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			for i := range 5 {
				if w := post(i); w.Code != 200 {
					t.Fatalf("request %d: %d %s", i+1, w.Code, w.Body)
				}
			}
			w := post(5)
			if w.Code != 429 || w.Header().Get("Retry-After") != "50" {
				t.Fatalf("6th request: %d Retry-After %q, want 429 and 50", w.Code, w.Header().Get("Retry-After"))
			}
			decodeError(t, w)
			if rec.count() != 5 {
				t.Fatalf("%d stored, want 5", rec.count())
			}
			advance(time.Minute)
			if w := post(6); w.Code != 200 {
				t.Fatalf("next window: %d %s", w.Code, w.Body)
			}
		})
	}
}

// TestTrustProxyHeaders: the trusted proxy (at RemoteAddr 10.0.0.1) appends
// the address it saw; whatever the client wrote comes before it.
func TestTrustProxyHeaders(t *testing.T) {
	tests := []struct {
		name  string
		trust bool
		xff   []string // one header line each
		want  string
	}{
		{"not trusted", false, []string{"198.51.100.7"}, "10.0.0.1"},
		{"not trusted, spoofed", false, []string{"203.0.113.9, 198.51.100.7"}, "10.0.0.1"},
		{"one entry", true, []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-written entries before", true, []string{"203.0.113.9, 192.0.2.1,198.51.100.7"}, "198.51.100.7"},
		{"several header lines", true, []string{"203.0.113.9, 192.0.2.1", "198.51.100.7"}, "198.51.100.7"},
		{"client line with a trailing comma", true, []string{"203.0.113.9,", "198.51.100.7"}, "198.51.100.7"},
		{"with a port", true, []string{"203.0.113.9, 198.51.100.7:4711"}, "198.51.100.7"},
		{"ipv6", true, []string{"203.0.113.9, 2001:db8::1"}, "2001:db8::1"},
		{"ipv6 with a port", true, []string{"[2001:db8::2]:443"}, "2001:db8::2"},
		{"last entry empty", true, []string{"198.51.100.7, "}, "10.0.0.1"},
		{"last entry not an address", true, []string{"198.51.100.7, unknown"}, "10.0.0.1"},
		{"no header", true, nil, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TrustProxyHeaders = tt.trust
			h, _, _ := newTestHandler(t, cfg, time.Now)
			r := httptest.NewRequest("GET", Path, nil)
			r.RemoteAddr = "10.0.0.1:5555"
			for _, line := range tt.xff {
				r.Header.Add("X-Forwarded-For", line)
			}
			if got := h.sourceIP(r); got != tt.want {
				t.Fatalf("X-Forwarded-For %q: source %q, want %q", tt.xff, got, tt.want)
			}
		})
	}
}

func BenchmarkAcceptedPost(b *testing.B) {
	h, _, _ := newTestHandler(b, testConfig(), time.Now)
	h.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	body := []byte(`{"message":"Price alert: Marina apartments -5%!","sessionId":"bench"}`)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"message":"hi"}`, `{"message":"a","message":"b"}`, `{"message":"hi","sessionId":null}`, `[]`, `{"message":"x"} y`, "{\"message\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeJSON(body)
		if err != nil {
			if !message.IsValidation(err) {
				t.Fatalf("non-validation error %v", err)
			}
			return
		}
		// What was accepted is exactly what encoding/json reads, and the
		// body was one object without duplicate keys.
		var std map[string]json.RawMessage
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json rejects: %v", body, err)
		}
		var msg string
		if err := json.Unmarshal(std["message"], &msg); err != nil || msg != p.Message {
			t.Fatalf("message %q, encoding/json reads %q", p.Message, msg)
		}
	})
}

func FuzzDecodeForm(f *testing.F) {
	for _, s := range []string{"message=hi", "message=hi&sessionId=abc", "message=a&message=b", "%zz", "message=%ff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeForm(body)
		if err != nil {
			if !message.IsValidation(err) {
				t.Fatalf("non-validation error %v", err)
			}
			return
		}
		vals, perr := url.ParseQuery(string(body))
		if perr != nil || vals.Get("message") != p.Message || vals.Get("sessionId") != p.SessionID {
			t.Fatalf("decoded %+v, url.ParseQuery reads %v (%v)", p, vals, perr)
		}
	})
}
