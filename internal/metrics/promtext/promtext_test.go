package promtext

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/metrics"
)

func TestCountersInTextFormat(t *testing.T) {
	r := New()
	r.Webhook(metrics.Webhook{Status: 200, Listeners: 2})
	r.Webhook(metrics.Webhook{Status: 200, Listeners: -1})
	r.Webhook(metrics.Webhook{Status: 401, Listeners: -1})
	r.Webhook(metrics.Webhook{Status: 503, StoreError: true, Throttled: true})
	r.StreamOpened()
	r.StreamEnded(metrics.StreamEnd{Reason: "closed", Duration: 2 * time.Second, Delivered: 5, Holes: 1})

	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	for _, want := range []string{
		"webhook_relay_webhooks_accepted_total 2",
		`webhook_relay_webhooks_refused_total{status="401"} 1`,
		`webhook_relay_webhooks_refused_total{status="503"} 1`,
		"webhook_relay_store_errors_total 1",
		"webhook_relay_store_throttles_total 1",
		"webhook_relay_webhook_listeners_count 1",
		"webhook_relay_webhook_listeners_sum 2",
		"webhook_relay_streams_opened_total 1",
		`webhook_relay_streams_ended_total{reason="closed"} 1`,
		"webhook_relay_stream_duration_seconds_sum 2",
		"webhook_relay_messages_delivered_total 5",
		"webhook_relay_holes_closed_total 1",
		"go_goroutines ",
	} {
		if !strings.Contains(string(body), "\n"+want) {
			t.Errorf("no line %q in\n%s", want, body)
		}
	}
}
