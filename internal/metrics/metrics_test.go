package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// emfLine logs attrs the way the handlers do and parses the line back.
func emfLine(t *testing.T, attrs []slog.Attr) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).LogAttrs(context.Background(), slog.LevelInfo, "event", attrs...)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	return m
}

// checkEMF validates a line against the EMF specification's rules that
// CloudWatch enforces, and returns the metrics it defines with their values
// and dimensions.
func checkEMF(t *testing.T, m map[string]any) map[string]string {
	t.Helper()
	aws, ok := m["_aws"].(map[string]any)
	if !ok {
		t.Fatalf("no _aws object in %v", m)
	}
	if ts, ok := aws["Timestamp"].(float64); !ok || ts < 1e12 {
		t.Fatalf("_aws.Timestamp %v, want epoch milliseconds", aws["Timestamp"])
	}
	directives, ok := aws["CloudWatchMetrics"].([]any)
	if !ok || len(directives) == 0 {
		t.Fatalf("_aws.CloudWatchMetrics %v, want directives", aws["CloudWatchMetrics"])
	}
	got := map[string]string{} // metric name -> "value dims"
	for _, d := range directives {
		d := d.(map[string]any)
		if d["Namespace"] != Namespace {
			t.Fatalf("Namespace %v", d["Namespace"])
		}
		var dims []string
		for _, set := range d["Dimensions"].([]any) {
			for _, k := range set.([]any) {
				v, ok := m[k.(string)].(string)
				if !ok || v == "" {
					t.Fatalf("dimension %v has no string value at the root: %v", k, m[k.(string)])
				}
				dims = append(dims, k.(string)+"="+v)
			}
		}
		for _, x := range d["Metrics"].([]any) {
			x := x.(map[string]any)
			name := x["Name"].(string)
			if !slices.Contains([]string{"Count", "Milliseconds", "None"}, x["Unit"].(string)) {
				t.Fatalf("metric %s unit %v", name, x["Unit"])
			}
			v, ok := m[name].(float64)
			if !ok {
				t.Fatalf("metric %s has no number at the root: %v", name, m[name])
			}
			got[name] = fmtValue(v) + " " + join(dims)
		}
	}
	return got
}

func fmtValue(v float64) string { b, _ := json.Marshal(v); return string(b) }
func join(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestEMF(t *testing.T) {
	e := EMF{Function: "relay-WebhookFunction", Now: func() time.Time { return time.UnixMilli(1764392542123) }}
	fn := `"Function=relay-WebhookFunction"`
	for _, tt := range []struct {
		name  string
		attrs []slog.Attr
		want  map[string]string
	}{
		{"accepted", e.Webhook(Webhook{Status: 200, Listeners: 3}), map[string]string{
			WebhooksAccepted: "1 [" + fn + "]", Listeners: "3 [" + fn + "]"}},
		{"accepted, listeners unknown", e.Webhook(Webhook{Status: 200, Listeners: -1}), map[string]string{
			WebhooksAccepted: "1 [" + fn + "]"}},
		{"refused", e.Webhook(Webhook{Status: 401, Listeners: -1}), map[string]string{
			WebhooksRefused: "1 [" + fn + `,"Status=401"]`}},
		{"throttled", e.Webhook(Webhook{Status: 503, StoreError: true, Throttled: true}), map[string]string{
			WebhooksRefused: "1 [" + fn + `,"Status=503"]`, StoreErrors: "1 [" + fn + "]", StoreThrottles: "1 [" + fn + "]"}},
		{"stream opened", e.StreamOpened(), map[string]string{StreamsOpened: "1 [" + fn + "]"}},
		{"stream ended", e.StreamEnded(StreamEnd{Reason: "closed", Duration: 1500 * time.Millisecond, Delivered: 7, Holes: 1}), map[string]string{
			StreamsEnded: "1 [" + fn + `,"Reason=closed"]`, StreamDurationMs: "1500 [" + fn + "]",
			MessagesDelivered: "7 [" + fn + "]", HolesClosed: "1 [" + fn + "]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := checkEMF(t, emfLine(t, tt.attrs))
			if len(got) != len(tt.want) {
				t.Fatalf("metrics %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
	if attrs := (Nop{}).Webhook(Webhook{Status: 200}); attrs != nil {
		t.Errorf("Nop added %v", attrs)
	}
}
