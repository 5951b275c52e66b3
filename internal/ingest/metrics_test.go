package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// TestRequestLineCarriesEMF: on Lambda each POST's log line carries its
// metrics in EMF, by status, with the listeners of an accepted one and the
// kind of store fault of a failed one.
func TestRequestLineCarriesEMF(t *testing.T) {
	emf := metrics.EMF{Function: "fn"}
	line := func(t *testing.T, h *Handler, logs *bytes.Buffer, r request) map[string]any {
		t.Helper()
		logs.Reset()
		r.do(h)
		var m map[string]any
		if err := json.Unmarshal(logs.Bytes(), &m); err != nil {
			t.Fatalf("log %q: %v", logs, err)
		}
		return m
	}
	cfg := testConfig()
	cfg.WebhookSecrets = []string{"s"}
	h, _, logs := newTestHandler(t, cfg, time.Now)
	h.metrics = emf
	ok := line(t, h, logs, request{body: `{"message":"hi","sessionId":"m"}`, header: map[string]string{"X-Webhook-Secret": "s"}})
	if ok["WebhooksAccepted"] != 1.0 || ok["Listeners"] != 0.0 || ok["Function"] != "fn" || ok["_aws"] == nil {
		t.Errorf("accepted POST's line: %v", ok)
	}
	refused := line(t, h, logs, request{body: `{"message":"hi"}`})
	if refused["WebhooksRefused"] != 1.0 || refused["Status"] != "401" || refused["WebhooksAccepted"] != nil {
		t.Errorf("refused POST's line: %v", refused)
	}
	if health := line(t, h, logs, request{method: "GET"}); health["_aws"] != nil {
		t.Errorf("a health check's line carries metrics: %v", health)
	}

	for _, tt := range []struct {
		err       error
		throttled bool
	}{
		{store.Throttled(errors.New("ThrottlingException")), true},
		{store.Unavailable(errors.New("connection refused")), false},
	} {
		var buf bytes.Buffer
		fh := New(failing{tt.err}, testConfig(), Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), Metrics: emf})
		buf.Reset() // New's warning about the open POST
		request{body: `{"message":"hi"}`}.do(fh)
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m["StoreErrors"] != 1.0 || m["StoreThrottles"] != map[bool]float64{true: 1, false: 0}[tt.throttled] || m["Status"] != "503" {
			t.Errorf("store fault %v: line %v", tt.err, m)
		}
	}
}
