package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsEndpoint: with METRICS=true the adapter serves its counters in
// the Prometheus text format, and they follow what happened; without, the
// path is a 404.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	off := startServer(t, baseEnv(nil))
	if code, _ := scrape(t, off.Base); code != http.StatusNotFound {
		t.Errorf("GET /metrics without METRICS: %d, want 404", code)
	}

	srv := startServer(t, baseEnv(map[string]string{"METRICS": "true"}))
	s := openStream(t, srv.Base, "sessionId=metrics")
	id := mustPost(t, srv.Base, map[string]string{"message": "counted", "sessionId": "metrics"}, nil)
	s.waitMessage(t, id, 5*time.Second)
	if code, _ := post(t, srv.Base, map[string]string{"sessionId": "metrics"}, nil); code != http.StatusBadRequest {
		t.Fatalf("POST without a message: %d, want 400", code)
	}
	s.cancel()
	want := []string{
		"webhook_relay_webhooks_accepted_total 1",
		`webhook_relay_webhooks_refused_total{status="400"} 1`,
		"webhook_relay_webhook_listeners_sum 1",
		"webhook_relay_streams_opened_total 1",
		`webhook_relay_streams_ended_total{reason="client gone"} 1`,
		"webhook_relay_messages_delivered_total 1",
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := scrape(t, srv.Base)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, "\n"+w+"\n") {
				missing = w
				break
			}
		}
		if code == http.StatusOK && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics: %d, no line %q in\n%s", code, missing, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
