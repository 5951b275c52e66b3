package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// The counting proxy sits between the relay and DynamoDB Local (both on
// loopback) and counts requests by operation (the X-Amz-Target header), with
// their sizes and an estimate of the capacity units AWS would bill:
//   - reads (GetItem, Query, Scan, BatchGetItem, TransactGetItems):
//     ceil(response bytes / 4 KiB), at least 1, per request. The relay reads
//     strongly consistent (1 RRU per 4 KiB); the response JSON is a little
//     larger than the items it carries, so this is an upper bound;
//   - writes (PutItem, UpdateItem, DeleteItem): ceil(request bytes / 1 KiB)
//     less a 512-byte allowance for the table name and expressions, at least
//     1, per request;
//   - TransactWriteItems: 2 WRU per item (items under 1 KiB).
// GET /__loadgen/counts returns the running totals as JSON.

const countsPath = "/__loadgen/counts"

type opCount struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"` // 4xx/5xx answers
	ReqBytes  int64   `json:"req_bytes"`
	RespBytes int64   `json:"resp_bytes"`
	RRU       float64 `json:"rru"`
	WRU       float64 `json:"wru"`
}

type counts struct {
	At  time.Time          `json:"at"`
	Ops map[string]opCount `json:"ops"`
}

type countingProxy struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	ops   map[string]opCount
}

func newCountingProxy(upstream *url.URL) *countingProxy {
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	rp.ErrorLog = nil
	return &countingProxy{proxy: rp, ops: map[string]opCount{}}
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// itemKind tells the relay's per-stream and per-sender items apart from its
// messages by their partition key (docs/design.md, "Data model"): connection
// leases (pk "conn#<shard>", "connip#<ip>", "connsess#<id>"; "conn" in older
// tables) and rate-limit counters (pk "count#..." in the DynamoDB store;
// "rate#..." in docs/design.md). The key is matched as an item's or a key's
// "pk" and as a Query's ":pk" value. Queries and reads of message partitions
// get no suffix.
func itemKind(body []byte) string {
	switch {
	case bytes.Contains(body, []byte(`pk":{"S":"conn`)):
		return "(lease)"
	case bytes.Contains(body, []byte(`"pk":{"S":"count#`)), bytes.Contains(body, []byte(`"pk":{"S":"rate#`)):
		return "(rate)"
	}
	return ""
}

// isLease reports whether op is a connection-lease operation: billed per
// stream-minute, not per message.
func isLease(op string) bool { return strings.HasSuffix(op, "(lease)") }

func (p *countingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == countsPath && r.Method == http.MethodGet {
		p.mu.Lock()
		c := counts{At: time.Now(), Ops: make(map[string]opCount, len(p.ops))}
		for k, v := range p.ops {
			c.Ops[k] = v
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
		return
	}
	op := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	if op == "" {
		op = "(none)"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadGateway)
		return
	}
	base := op
	op += itemKind(body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	cw := &countingWriter{ResponseWriter: w}
	p.proxy.ServeHTTP(cw, r)

	var rru, wru float64
	switch base {
	case "GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems":
		rru = float64(max(1, ceilDiv(cw.n, 4096)))
	case "PutItem", "UpdateItem", "DeleteItem":
		wru = float64(max(1, ceilDiv(int64(len(body))-512, 1024)))
	case "TransactWriteItems":
		var in struct {
			TransactItems []json.RawMessage `json:"TransactItems"`
		}
		_ = json.Unmarshal(body, &in)
		wru = float64(2 * max(1, len(in.TransactItems)))
	}
	p.mu.Lock()
	c := p.ops[op]
	c.Requests++
	if cw.status >= 400 {
		c.Errors++
	}
	c.ReqBytes += int64(len(body))
	c.RespBytes += cw.n
	c.RRU += rru
	c.WRU += wru
	p.ops[op] = c
	p.mu.Unlock()
}

// serveProxy runs the counting proxy on addr in front of upstream until ctx
// ends, printing its URL on out.
func serveProxy(ctx context.Context, addr, upstream string, out io.Writer) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-ddb-proxy %q: want http://127.0.0.1:PORT", upstream)
	}
	if err := checkLoopback(u.Host); err != nil {
		return err
	}
	if err := checkLoopback(addr); err != nil {
		return err
	}
	srv := &http.Server{Handler: newCountingProxy(u), ReadHeaderTimeout: 10 * time.Second}
	return serveBounded(ctx, "ddb-proxy", addr, srv, 0, out, "")
}

// ddbTracker snapshots a proxy's counts at the phases of a run.
type ddbTracker struct {
	url    string
	client *http.Client
	snaps  []namedCounts
}

type namedCounts struct {
	name string
	c    counts
}

func (t *ddbTracker) snap(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("read DynamoDB counts from %s: %w", t.url, err)
	}
	defer resp.Body.Close()
	var c counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return fmt.Errorf("read DynamoDB counts from %s: %w", t.url, err)
	}
	t.snaps = append(t.snaps, namedCounts{name, c})
	return nil
}

// ddbPhase is the requests of one phase of a run, by operation, with the
// estimated RRU and WRU under the keys "RRU" and "WRU".
type ddbPhase struct {
	Name    string             `json:"name"`
	Seconds float64            `json:"seconds"`
	Ops     map[string]float64 `json:"ops"`
}

type ddbR struct {
	Phases []ddbPhase `json:"phases"`
	// Per stream opened (the connect phase).
	PerStreamOpen map[string]float64 `json:"per_stream_open,omitempty"`
	// Per stream-minute with no traffic (the idle phase): polling and leases.
	PerStreamMinute map[string]float64 `json:"per_stream_minute,omitempty"`
	// Per accepted message: the load phase less what the same streams cost
	// idle over the same time (so it holds ingest writes and the extra reads
	// that carrying the message costs every stream); lease renewals are left
	// out (they are per stream-minute).
	PerMessage map[string]float64 `json:"per_message,omitempty"`
	// Requests per stream-minute under load, all included.
	PerStreamMinuteLoad map[string]float64 `json:"per_stream_minute_load,omitempty"`
	// Reads of message partitions per poll interval, idle (with -poll-interval).
	Reads *pollReadsR `json:"reads_per_poll,omitempty"`
}

// pollReadsR is how many Queries of message partitions (not leases or
// counters) the streams of one server process made per poll interval while
// idle. Each stream reading its own partitions makes it streams x partitions
// per stream; one reader per partition per process makes it the partitions.
type pollReadsR struct {
	PollIntervalS float64 `json:"poll_interval_s"`
	Streams       int     `json:"streams"`
	// Partitions the streams follow together: broadcast, and each session
	// that has a stream.
	Partitions     int     `json:"partitions"`
	WindowS        float64 `json:"window_s"`
	Queries        int64   `json:"queries"`
	QueriesPerPoll float64 `json:"queries_per_poll"`
	PerPartition   float64 `json:"queries_per_poll_per_partition"`
}

// pollReads counts the Queries of the idle phase (connected -> idle) per
// poll interval; nil without both.
func (t *ddbTracker) pollReads(interval time.Duration, streams, partitions int) *pollReadsR {
	var a, b *counts
	for i := range t.snaps {
		switch t.snaps[i].name {
		case "connected":
			a = &t.snaps[i].c
		case "idle":
			b = &t.snaps[i].c
		}
	}
	if interval <= 0 || a == nil || b == nil || partitions == 0 {
		return nil
	}
	secs := b.At.Sub(a.At).Seconds()
	q := b.Ops["Query"].Requests - a.Ops["Query"].Requests
	perPoll := float64(q) * interval.Seconds() / secs
	return &pollReadsR{
		PollIntervalS: interval.Seconds(), Streams: streams, Partitions: partitions,
		WindowS: round3(secs), Queries: q,
		QueriesPerPoll: round3(perPoll), PerPartition: round3(perPoll / float64(partitions)),
	}
}

func diff(a, b counts) map[string]float64 { return diffOps(a, b, func(string) bool { return true }) }

// diffOps is b - a for the operations keep accepts, with their RRU and WRU
// summed under "RRU" and "WRU".
func diffOps(a, b counts, keep func(op string) bool) map[string]float64 {
	out := map[string]float64{}
	for op, v := range b.Ops {
		if !keep(op) {
			continue
		}
		d := v.Requests - a.Ops[op].Requests
		if d != 0 {
			out[op] = float64(d)
		}
		out["RRU"] += v.RRU - a.Ops[op].RRU
		out["WRU"] += v.WRU - a.Ops[op].WRU
		if e := v.Errors - a.Ops[op].Errors; e != 0 {
			out["errors"] += float64(e)
		}
	}
	return out
}

func scale(m map[string]float64, f float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = round3(v * f)
	}
	return out
}

func (t *ddbTracker) result(streams int, okMessages int64) *ddbR {
	r := &ddbR{}
	byName := map[string]counts{}
	for i, s := range t.snaps {
		byName[s.name] = s.c
		if i > 0 {
			prev := t.snaps[i-1]
			r.Phases = append(r.Phases, ddbPhase{
				Name:    prev.name + "->" + s.name,
				Seconds: round3(s.c.At.Sub(prev.c.At).Seconds()),
				Ops:     diff(prev.c, s.c),
			})
		}
	}
	if streams == 0 {
		return r
	}
	if a, ok := byName["start"]; ok {
		if b, ok := byName["connected"]; ok {
			r.PerStreamOpen = scale(diff(a, b), 1/float64(streams))
		}
	}
	if a, ok := byName["connected"]; ok {
		if b, ok := byName["idle"]; ok {
			secs := b.At.Sub(a.At).Seconds()
			r.PerStreamMinute = scale(diff(a, b), 60/(secs*float64(streams)))
		}
	}
	from, ok := byName["idle"]
	if !ok {
		from, ok = byName["connected"]
	}
	to, ok2 := byName["drained"]
	if ok && ok2 {
		secs := to.At.Sub(from.At).Seconds()
		r.PerStreamMinuteLoad = scale(diff(from, to), 60/(secs*float64(streams)))
		if okMessages > 0 {
			// Leases are per stream-minute (idle or not): left out. What the
			// idle streams did over the same time (polling) is taken off.
			notLease := func(op string) bool { return !isLease(op) }
			load := diffOps(from, to, notLease)
			idle := map[string]float64{}
			if a, ok := byName["connected"]; ok {
				if b, ok := byName["idle"]; ok {
					idle = scale(diffOps(a, b, notLease), 1/b.At.Sub(a.At).Seconds())
				}
			}
			per := map[string]float64{}
			for k, v := range load {
				per[k] = v - idle[k]*secs
			}
			r.PerMessage = scale(per, 1/float64(okMessages))
		}
	}
	return r
}

// formatOps renders "Query 120, GetItem 2, RRU 130" in a stable order.
func formatOps(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "RRU" && k != "WRU" && k != "errors" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	var parts []string
	for _, k := range keys {
		if m[k] > 0.0005 || m[k] < -0.0005 {
			parts = append(parts, fmt.Sprintf("%s %s", k, fmtNum(m[k])))
		}
	}
	for _, k := range []string{"RRU", "WRU", "errors"} {
		if v, ok := m[k]; ok && (v > 0.0005 || v < -0.0005) {
			parts = append(parts, fmt.Sprintf("**%s %s**", k, fmtNum(v)))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func fmtNum(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
