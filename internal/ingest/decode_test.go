package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
)

func gzipped(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const (
	formType = "application/x-www-form-urlencoded"
	bom      = "\xef\xbb\xbf"
)

// TestSenders covers what real senders put on the wire besides a plain JSON
// body: curl -d's form content type, byte-order marks, gzip.
func TestSenders(t *testing.T) {
	gz := func(h ...string) map[string]string {
		m := map[string]string{"Content-Encoding": "gzip"}
		if len(h) == 2 {
			m[h[0]] = h[1]
		}
		return m
	}
	tests := []struct {
		name        string
		req         request
		wantText    string
		wantSession string
	}{
		{"curl -d JSON sent as a form", request{contentType: formType, body: `{"message":"x"}`}, "x", ""},
		{"curl -d JSON with session", request{contentType: formType, body: `{"message":"x","sessionId":"s1"}`}, "x", "s1"},
		{"form-typed JSON after whitespace", request{contentType: formType, body: " \r\n\t{\"message\":\"x\"}"}, "x", ""},
		{"form-typed JSON with charset", request{contentType: formType + "; charset=utf-8", body: `{"message":"x"}`}, "x", ""},
		{"BOM before JSON", request{body: bom + `{"message":"bom json"}`}, "bom json", ""},
		{"BOM before JSON without Content-Type", request{contentType: "-", body: bom + `{"message":"bom"}`}, "bom", ""},
		{"BOM before form", request{contentType: formType, body: bom + "message=bom+form&sessionId=f"}, "bom form", "f"},
		{"BOM before form-typed JSON", request{contentType: formType, body: bom + `{"message":"x"}`}, "x", ""},
		{"BOM inside the message is kept", request{body: `{"message":"` + bom + `x"}`}, bom + "x", ""},
		{"gzip JSON", request{body: gzipped(t, `{"message":"zipped","sessionId":"z"}`), header: gz()}, "zipped", "z"},
		{"gzip form", request{contentType: formType, body: gzipped(t, "message=zipped+form"), header: gz()}, "zipped form", ""},
		{"gzip BOM JSON", request{body: gzipped(t, bom+`{"message":"zb"}`), header: gz()}, "zb", ""},
		{"x-gzip", request{body: gzipped(t, `{"message":"x"}`), header: map[string]string{"Content-Encoding": "x-gzip"}}, "x", ""},
		{"GZIP in capitals", request{body: gzipped(t, `{"message":"x"}`), header: map[string]string{"Content-Encoding": "GZIP"}}, "x", ""},
		{"identity", request{body: `{"message":"x"}`, header: map[string]string{"Content-Encoding": "identity"}}, "x", ""},
		{"gzip decoded exactly at the limit", request{body: gzipped(t, `{"message":"`+strings.Repeat("a", 65536-len(`{"message":""}`))+`"}`), header: gz()}, strings.Repeat("a", 65536-len(`{"message":""}`)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxMessageChars = config.MaxMessageChars
			h, rec, _ := newTestHandler(t, cfg, time.Now)
			w := tt.req.do(h)
			if w.Code != 200 {
				t.Fatalf("status = %d (%s)", w.Code, w.Body)
			}
			if rec.count() != 1 {
				t.Fatalf("%d stored", rec.count())
			}
			if m := rec.stored[0]; m.Text != tt.wantText || m.SessionID != tt.wantSession {
				t.Fatalf("stored text %q session %q, want %q %q", m.Text, m.SessionID, tt.wantText, tt.wantSession)
			}
		})
	}
}

func TestSendersRejected(t *testing.T) {
	over := `{"message":"` + strings.Repeat("a", 65536) + `"}`
	tests := []struct {
		name   string
		req    request
		status int
		errHas string
	}{
		{"br", request{body: `{"message":"x"}`, header: map[string]string{"Content-Encoding": "br"}}, 415, "Content-Encoding 'br'"},
		{"deflate", request{body: `{"message":"x"}`, header: map[string]string{"Content-Encoding": "deflate"}}, 415, "gzip"},
		{"gzip twice", request{body: gzipped(t, gzipped(t, `{"message":"x"}`)), header: map[string]string{"Content-Encoding": "gzip, gzip"}}, 415, "Content-Encoding"},
		{"gzip then br", request{body: `{"message":"x"}`, header: map[string]string{"Content-Encoding": "gzip, br"}}, 415, "Content-Encoding"},
		{"gzip header on a plain body", request{body: `{"message":"x"}`, header: map[string]string{"Content-Encoding": "gzip"}}, 400, "not valid gzip"},
		{"truncated gzip", request{body: gzipped(t, `{"message":"x"}`)[:15], header: map[string]string{"Content-Encoding": "gzip"}}, 400, "not valid gzip"},
		{"gzip decoded over the limit", request{body: gzipped(t, over), header: map[string]string{"Content-Encoding": "gzip"}}, 413, "after gzip decoding"},
		{"gzip of invalid UTF-8", request{body: gzipped(t, "{\"message\":\"\xff\"}"), header: map[string]string{"Content-Encoding": "gzip"}}, 400, "UTF-8"},
		{"form-typed broken JSON", request{contentType: formType, body: `{"message":`}, 400, "not valid JSON"},
		{"form-typed JSON without message", request{contentType: formType, body: `{"text":"x"}`}, 400, "'message' is required"},
		{"two BOMs", request{body: bom + bom + `{"message":"x"}`}, 400, "not valid JSON"},
		{"JSON-typed form is not sniffed", request{body: "message=x"}, 400, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec, _ := newTestHandler(t, testConfig(), time.Now)
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
		})
	}
}

// TestGzipBombCostsLittle: a small body that inflates to 50 MB is refused
// after reading at most MAX_BODY_BYTES of it, not after inflating it all.
func TestGzipBombCostsLittle(t *testing.T) {
	bomb := gzipped(t, strings.Repeat("\x00", 50<<20))
	if len(bomb) >= 65536 {
		t.Fatalf("bomb is %d bytes compressed; want it under MAX_BODY_BYTES", len(bomb))
	}
	h, rec, _ := newTestHandler(t, testConfig(), time.Now)
	req := request{body: bomb, header: map[string]string{"Content-Encoding": "gzip"}}
	req.do(h) // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := req.do(h)
	runtime.ReadMemStats(&after)
	if w.Code != 413 {
		t.Fatalf("status %d, want 413 (%s)", w.Code, w.Body)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes; want it bounded by the body limit, not the inflated size", alloc)
	}
	if rec.count() != 0 {
		t.Fatalf("stored %d", rec.count())
	}
}

// TestEmptySessionIDIsBroadcast: "" means broadcast in every way a sender
// can say it, as an empty ?sessionId= does on the stream (see
// TestEmptySessionIDEndToEnd).
func TestEmptySessionIDIsBroadcast(t *testing.T) {
	tests := []struct {
		name string
		req  request
	}{
		{"JSON omitted", request{body: `{"message":"hi"}`}},
		{"JSON null", request{body: `{"message":"hi","sessionId":null}`}},
		{"JSON empty", request{body: `{"message":"hi","sessionId":""}`}},
		{"form omitted", request{contentType: formType, body: "message=hi"}},
		{"form empty", request{contentType: formType, body: "message=hi&sessionId="}},
		{"form bare key", request{contentType: formType, body: "message=hi&sessionId"}},
		{"form-typed JSON empty", request{contentType: formType, body: `{"message":"hi","sessionId":""}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec, _ := newTestHandler(t, testConfig(), time.Now)
			if w := tt.req.do(h); w.Code != 200 {
				t.Fatalf("status %d (%s)", w.Code, w.Body)
			}
			if rec.count() != 1 || rec.stored[0].SessionID != "" {
				t.Fatalf("stored %+v, want one broadcast", rec.stored)
			}
		})
	}
	// Duplicates are still an error, also when one of them is empty.
	h, rec, _ := newTestHandler(t, testConfig(), time.Now)
	for _, body := range []string{`{"message":"hi","sessionId":"","sessionId":"a"}`} {
		if w := (request{body: body}).do(h); w.Code != 400 {
			t.Errorf("%s: status %d, want 400", body, w.Code)
		}
	}
	if w := (request{contentType: formType, body: "message=hi&sessionId=&sessionId=a"}).do(h); w.Code != 400 {
		t.Errorf("form with two sessionId fields: status %d, want 400", w.Code)
	}
	if rec.count() != 0 {
		t.Errorf("stored %d", rec.count())
	}
}

func TestIdempotencyKeyRule(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
		errHas    string
	}{
		{"uuid", "3b241101-e2bb-4255-8caf-4136c566a962", true, ""},
		{"with spaces", "order 42 shipped", true, ""},
		{"every printable", func() string {
			var b strings.Builder
			for c := byte(0x20); c <= 0x7e; c++ {
				b.WriteByte(c)
			}
			return b.String()
		}(), true, ""},
		{"255 characters", strings.Repeat("k", 255), true, ""},
		{"256 characters", strings.Repeat("k", 256), false, "it has 256 bytes"},
		{"non-ASCII", "caf\u00e9", false, "byte 4 is 0xc3"},
		{"tab", "a\tb", false, "byte 2 is 0x09"},
		{"DEL", "a\x7f", false, "byte 2 is 0x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec, _ := newTestHandler(t, testConfig(), time.Now)
			req := request{body: `{"message":"hi"}`, header: map[string]string{"Idempotency-Key": tt.key}}
			w := req.do(h)
			if tt.ok {
				if w.Code != 200 {
					t.Fatalf("status %d (%s)", w.Code, w.Body)
				}
				if again := req.do(h); again.Body.String() != w.Body.String() || rec.count() != 1 {
					t.Fatalf("retry answered %s after %s, %d stored; want the first answer, 1 stored", again.Body, w.Body, rec.count())
				}
				return
			}
			if w.Code != 400 {
				t.Fatalf("status %d, want 400", w.Code)
			}
			msg := decodeError(t, w)
			for _, want := range []string{"1 to 255 printable ASCII characters", "spaces", tt.errHas} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
		})
	}
}

func TestSignatureTimestampWording(t *testing.T) {
	now := time.Unix(1764392542, 0)
	body := []byte(`{"message":"hi"}`)
	tests := []struct {
		name      string
		skew      time.Duration
		want, not string
	}{
		{"past", -6 * time.Minute, "Stale", "future"},
		{"future", 6 * time.Minute, "too far in the future", "Stale"},
		{"just inside", 4 * time.Minute, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := now.Add(tt.skew).Unix()
			h := map[string][]string{
				"Webhook-Id":        {"msg_1"},
				"Webhook-Timestamp": {fmt.Sprint(ts)},
				"Webhook-Signature": {Sign(signingKey, "msg_1", ts, body)},
			}
			got := verifySignature(signingKey, h, body, now)
			if tt.want == "" {
				if got != "" {
					t.Fatalf("rejected: %s", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) || strings.Contains(got, tt.not) {
				t.Fatalf("reason %q, want %q and not %q", got, tt.want, tt.not)
			}
		})
	}
}

// TestSignatureOverDecodedBody: a gzip sender signs what it compresses.
func TestSignatureOverDecodedBody(t *testing.T) {
	now := time.Now()
	body := `{"message":"signed and zipped"}`
	cfg := testConfig()
	cfg.SigningSecret = signingKey
	h, rec, _ := newTestHandler(t, cfg, func() time.Time { return now })
	w := request{body: gzipped(t, body), header: map[string]string{
		"Content-Encoding":  "gzip",
		"webhook-id":        "msg_z",
		"webhook-timestamp": fmt.Sprint(now.Unix()),
		"webhook-signature": Sign(signingKey, "msg_z", now.Unix(), []byte(body)),
	}}.do(h)
	if w.Code != 200 || rec.count() != 1 {
		t.Fatalf("status %d (%s), %d stored", w.Code, w.Body, rec.count())
	}
}

// MemStore is the store newTestHandler builds, for the tests of package
// ingest_test (broadcast_test.go), which serve the whole relay on it.
func MemStore(t testing.TB) *memstore.Store {
	_, rec, _ := newTestHandler(t, testConfig(), time.Now)
	return rec.Store.(*memstore.Store)
}
