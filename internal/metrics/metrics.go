// Package metrics names what the relay measures, and writes it in
// CloudWatch Embedded Metric Format (EMF): as members of the log line that
// reports the event, so that CloudWatch Logs extracts the metrics with no
// agent and no API call. The local adapter serves the same counters in the
// Prometheus text format (internal/metrics/promtext).
package metrics

import (
	"log/slog"
	"strconv"
	"time"
)

// Namespace is the CloudWatch namespace of the relay's metrics.
const Namespace = "WebhookRelay"

// The metric names, in CloudWatch (EMF) and in the dashboard of template.yaml.
const (
	WebhooksAccepted  = "WebhooksAccepted"  // 200s; dimension Function
	WebhooksRefused   = "WebhooksRefused"   // other answers to a POST; dimensions Function, Status
	StoreErrors       = "StoreErrors"       // a POST the store failed (503, 504, 500)
	StoreThrottles    = "StoreThrottles"    // of those, DynamoDB throttling
	Listeners         = "Listeners"         // streams open for an accepted webhook's target
	StreamsOpened     = "StreamsOpened"     // dimension Function
	StreamsEnded      = "StreamsEnded"      // dimensions Function, Reason
	StreamDurationMs  = "StreamDurationMs"  // per ended stream
	MessagesDelivered = "MessagesDelivered" // by an ended stream, replay included
	HolesClosed       = "HolesClosed"       // tombstones an ended stream wrote
)

// Webhook is what one POST /api/webhook came to.
type Webhook struct {
	Status     int
	StoreError bool // the store failed it
	Throttled  bool // ... by throttling
	Listeners  int  // for a 200; -1 when not counted
}

// StreamEnd is what one stream did, told when it ends.
type StreamEnd struct {
	Reason    string
	Duration  time.Duration
	Delivered int
	Holes     int
}

// Recorder is told what the relay did. Each method returns attributes for
// the log line that reports the event: EMF puts its metrics there; other
// recorders return none.
type Recorder interface {
	Webhook(Webhook) []slog.Attr
	StreamOpened() []slog.Attr
	StreamEnded(StreamEnd) []slog.Attr
}

// Nop records nothing.
type Nop struct{}

func (Nop) Webhook(Webhook) []slog.Attr       { return nil }
func (Nop) StreamOpened() []slog.Attr         { return nil }
func (Nop) StreamEnded(StreamEnd) []slog.Attr { return nil }

// EMF writes the metrics into the event's log line. Function is the value
// of the Function dimension (the Lambda function's name).
type EMF struct {
	Function string
	Now      func() time.Time // default time.Now
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMeta struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// line builds the members of one EMF document: the _aws metadata, the
// dimension values, and each metric's value.
type line struct {
	meta  emfMeta
	attrs []slog.Attr
}

func (e EMF) line() *line {
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	return &line{meta: emfMeta{Timestamp: now().UnixMilli()}, attrs: []slog.Attr{slog.String("Function", e.Function)}}
}

// add puts metrics under one set of dimensions (Function, plus dims).
func (l *line) add(dims []string, unit string, values ...any) {
	d := emfDirective{Namespace: Namespace, Dimensions: [][]string{append([]string{"Function"}, dims...)}}
	for i := 0; i < len(values); i += 2 {
		name := values[i].(string)
		d.Metrics = append(d.Metrics, emfMetric{Name: name, Unit: unit})
		l.attrs = append(l.attrs, slog.Any(name, values[i+1]))
	}
	l.meta.CloudWatchMetrics = append(l.meta.CloudWatchMetrics, d)
}

func (l *line) done() []slog.Attr { return append(l.attrs, slog.Any("_aws", l.meta)) }

func (e EMF) Webhook(w Webhook) []slog.Attr {
	l := e.line()
	if w.Status == 200 {
		l.add(nil, "Count", WebhooksAccepted, 1)
		if w.Listeners >= 0 {
			l.add(nil, "None", Listeners, w.Listeners)
		}
		return l.done()
	}
	l.attrs = append(l.attrs, slog.String("Status", strconv.Itoa(w.Status)))
	l.add([]string{"Status"}, "Count", WebhooksRefused, 1)
	if w.StoreError {
		l.add(nil, "Count", StoreErrors, 1, StoreThrottles, b2i(w.Throttled))
	}
	return l.done()
}

func (e EMF) StreamOpened() []slog.Attr {
	l := e.line()
	l.add(nil, "Count", StreamsOpened, 1)
	return l.done()
}

func (e EMF) StreamEnded(s StreamEnd) []slog.Attr {
	l := e.line()
	l.attrs = append(l.attrs, slog.String("Reason", s.Reason))
	l.add([]string{"Reason"}, "Count", StreamsEnded, 1)
	l.add(nil, "Milliseconds", StreamDurationMs, s.Duration.Milliseconds())
	l.add(nil, "Count", MessagesDelivered, s.Delivered, HolesClosed, s.Holes)
	return l.done()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
