// Package promtext keeps the relay's metrics (internal/metrics) as
// Prometheus counters and histograms and serves them in the Prometheus text
// format, for the local adapter's GET /metrics. It uses the Prometheus
// client library: the exposition format and its content negotiation are
// its job. The Lambda functions never import it (they write EMF).
package promtext

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/webhook-relay/webhook-relay/internal/metrics"
)

// Recorder is a metrics.Recorder with its own registry.
type Recorder struct {
	reg            *prometheus.Registry
	accepted       prometheus.Counter
	refused        *prometheus.CounterVec
	storeErrors    prometheus.Counter
	storeThrottles prometheus.Counter
	listeners      prometheus.Histogram
	opened         prometheus.Counter
	ended          *prometheus.CounterVec
	duration       prometheus.Histogram
	delivered      prometheus.Counter
	holes          prometheus.Counter
}

var _ metrics.Recorder = (*Recorder)(nil)

// New returns a Recorder with every metric registered.
func New() *Recorder {
	const ns = "webhook_relay"
	r := &Recorder{
		reg:            prometheus.NewRegistry(),
		accepted:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "webhooks_accepted_total", Help: "POST /api/webhook answered 200."}),
		refused:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhooks_refused_total", Help: "POST /api/webhook answered otherwise, by status."}, []string{"status"}),
		storeErrors:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_errors_total", Help: "POSTs the store failed (503, 504, 500)."}),
		storeThrottles: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_throttles_total", Help: "Of the store errors, throttling."}),
		listeners:      prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "webhook_listeners", Help: "Streams open for an accepted webhook's target.", Buckets: []float64{0, 1, 2, 5, 10, 100, 1000}}),
		opened:         prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "streams_opened_total", Help: "Streams opened."}),
		ended:          prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "streams_ended_total", Help: "Streams ended, by reason."}, []string{"reason"}),
		duration:       prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "stream_duration_seconds", Help: "How long ended streams were open.", Buckets: []float64{1, 10, 60, 300, 840, 3600}}),
		delivered:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "messages_delivered_total", Help: "Messages delivered by ended streams, replays included."}),
		holes:          prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "holes_closed_total", Help: "Sequence numbers closed with a tombstone by ended streams."}),
	}
	r.reg.MustRegister(r.accepted, r.refused, r.storeErrors, r.storeThrottles, r.listeners,
		r.opened, r.ended, r.duration, r.delivered, r.holes,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus text format.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

func (r *Recorder) Webhook(w metrics.Webhook) []slog.Attr {
	if w.Status == http.StatusOK {
		r.accepted.Inc()
		if w.Listeners >= 0 {
			r.listeners.Observe(float64(w.Listeners))
		}
		return nil
	}
	r.refused.WithLabelValues(strconv.Itoa(w.Status)).Inc()
	if w.StoreError {
		r.storeErrors.Inc()
		if w.Throttled {
			r.storeThrottles.Inc()
		}
	}
	return nil
}

func (r *Recorder) StreamOpened() []slog.Attr {
	r.opened.Inc()
	return nil
}

func (r *Recorder) StreamEnded(s metrics.StreamEnd) []slog.Attr {
	r.ended.WithLabelValues(s.Reason).Inc()
	r.duration.Observe(s.Duration.Seconds())
	r.delivered.Add(float64(s.Delivered))
	r.holes.Add(float64(s.Holes))
	return nil
}
