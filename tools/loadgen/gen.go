package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// config is one load run.
type config struct {
	Target             string        // base URL of the server, loopback only
	Floor              bool          // start the built-in floor and target it
	Centrifugo         string        // path of a Centrifugo binary: start it (centrifugo.go) and target it
	ServerPID          int           // server process for RSS/CPU (0: unknown)
	Subscribers        int           // S SSE streams
	Sessions           int           // K sessions; 0: every stream broadcast-only
	BroadcastRatio     float64       // with K>0: share of messages sent as broadcasts
	Rate               float64       // messages per second; 0: as fast as C workers go
	Concurrency        int           // C publishing workers
	Duration           time.Duration // publishing time D
	Drain              time.Duration // how long to wait for the last deliveries
	Idle               bool          // T4: connect S idle streams and measure server memory
	Settle             time.Duration // idle: wait this long before reading RSS
	IdlePhase          time.Duration // streams open, nothing sent, before publishing (T5)
	ConnectConcurrency int           // connections being set up at once
	ConnectTimeout     time.Duration // per connection attempt
	ReconnectMean      time.Duration // mean time between client reconnects per stream; 0: never
	Idempotency        bool          // send an Idempotency-Key with every POST
	Sender             bool          // publish as a correct sender: retry by answer class (sender.go)
	RetryFor           time.Duration // with Sender: give up on a message this long after its first attempt
	FaultControl       string        // base URL of a fault proxy (-fault-proxy) to drive
	FaultSchedule      []phaseSpec   // rule sets to switch the fault proxy to, by time from the start of publishing
	FaultHeldFor       time.Duration // held writers of the weather rule set
	Progress           time.Duration // print a progress line this often; 0: never
	DDBCounts          string        // URL of a counting proxy's counts (T5)
	PollInterval       time.Duration // the server's POLL_INTERVAL: with DDBCounts, reads are also counted per poll interval
	Label              string        // name in the report
	MaxRun             time.Duration // hard bound on the whole run; 0: derived
	Log                io.Writer     // progress and notes; nil: discard

	wire wire // with Target: the protocol to speak (tests: a fake Centrifugo); nil: the relay's
}

func (c *config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 3 * time.Second
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 128
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 2 * time.Minute
	}
	if c.FaultHeldFor <= 0 {
		c.FaultHeldFor = defaultHeldFor
	}
	if c.MaxRun <= 0 {
		connect := time.Duration(c.Subscribers)*5*time.Millisecond + 30*time.Second
		c.MaxRun = connect + c.Duration + c.Drain + c.Settle + c.IdlePhase + time.Minute
		if c.Sender {
			c.MaxRun += c.RetryFor
		}
	}
}

func (c *config) validate() error {
	switch {
	case c.Subscribers < 0 || c.Subscribers > 50000:
		return errors.New("-subscribers must be 0..50000")
	case c.Sessions < 0:
		return errors.New("-sessions must be >= 0")
	case c.Rate < 0:
		return errors.New("-rate must be >= 0")
	case c.Duration < 0 || c.Duration > 2*time.Hour:
		return errors.New("-duration must be 0..2h")
	case c.BroadcastRatio < 0 || c.BroadcastRatio > 1:
		return errors.New("-broadcast-ratio must be 0..1")
	case !c.Idle && c.Duration == 0:
		return errors.New("-duration must be > 0 (or use -idle)")
	case c.Target == "" && !c.Floor && c.Centrifugo == "":
		return errors.New("give -target URL, -floor or -centrifugo PATH")
	case (c.Target != "") && c.Floor || (c.Target != "" || c.Floor) && c.Centrifugo != "":
		return errors.New("give only one of -target, -floor and -centrifugo")
	case c.Centrifugo != "" && (c.Sender || c.Idempotency || c.ReconnectMean > 0 || c.FaultControl != "" || c.DDBCounts != ""):
		return errors.New("-centrifugo measures plain publishing and streams: no -sender, -idempotency, -reconnect-mean, -fault-control or -ddb-counts")
	case len(c.FaultSchedule) > 0 && c.FaultControl == "":
		return errors.New("-fault-schedule needs -fault-control URL")
	}
	return nil
}

// checkLoopback refuses any address that is not this machine's loopback: the
// generator never sends traffic anywhere else.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: the load generator only targets 127.0.0.1/localhost", hostport)
	}
	return nil
}

// gen is one run in progress.
type gen struct {
	cfg      config
	run      string // random run id, part of every marker
	base     string // target URL without trailing slash
	hostport string
	basePath string
	client   *http.Client
	wire     wire // the server's protocol

	subs       []*subscriber
	live       []*subscriber // connected at the start of publishing
	perSession []int64       // live subscribers per session

	nextN          atomic.Int64
	expected       atomic.Int64 // deliveries owed for messages that got 200
	delivered      atomic.Int64 // unique deliveries of this run's messages
	published      atomic.Int64
	failed         atomic.Int64
	ambiguous      atomic.Int64 // deliveries a POST without an answer may still cause
	stopReconnects atomic.Bool

	// With -sender.
	answers *answers
	genSeen *genSet      // key generations delivered, by message number
	retried atomic.Int64 // accepted after more than one attempt

	// Phases: 0 before publishing, then one per fault-schedule step (or
	// one for the whole of publishing and drain).
	pubStartNano atomic.Int64

	samplesMu sync.Mutex
	samples   []sample
}

// sample is one progress line: the server over time, for soak runs.
type sample struct {
	T         float64 `json:"t_s"`
	Published int64   `json:"published"`
	Delivered int64   `json:"delivered"`
	Pending   int64   `json:"pending"`
	RSSMB     float64 `json:"server_rss_mb"`
	Threads   int     `json:"server_threads"`
	Active    int     `json:"active_streams"` // from the health endpoint; -1 unknown
}

// soakR says whether the server's memory levelled off.
type soakR struct {
	Samples []sample `json:"samples"`
	// Largest RSS in the first and second half of the run (after the first
	// sample, which still holds connection set-up).
	RSSFirstHalfMaxMB  float64 `json:"rss_first_half_max_mb"`
	RSSSecondHalfMaxMB float64 `json:"rss_second_half_max_mb"`
	Plateau            bool    `json:"plateau"`
}

func (g *gen) soakResult() *soakR {
	g.samplesMu.Lock()
	defer g.samplesMu.Unlock()
	if len(g.samples) == 0 {
		return nil
	}
	r := &soakR{Samples: slices.Clone(g.samples)}
	body := r.Samples
	if len(body) > 2 {
		body = body[1:]
	}
	half := len(body) / 2
	for i, s := range body {
		if i < half || half == 0 {
			r.RSSFirstHalfMaxMB = max(r.RSSFirstHalfMaxMB, s.RSSMB)
		}
		if i >= half {
			r.RSSSecondHalfMaxMB = max(r.RSSSecondHalfMaxMB, s.RSSMB)
		}
	}
	// Levelled off: the second half grows at most 20% (+5 MB of slack for
	// GC timing) over the first.
	r.Plateau = r.RSSSecondHalfMaxMB <= 1.2*r.RSSFirstHalfMaxMB+5
	return r
}

// marker is what a message's text says about it:
// lg:<run>:<n>:<target>:<sent unix ns>, and with -sender ":k<gen>", the
// generation of the Idempotency-Key the attempt carried.
type marker struct {
	n      int64
	target int32 // -1: broadcast
	sent   int64
	gen    int
}

func (g *gen) sessionIDOf(k int) string { return "lg-" + g.run + "-" + strconv.Itoa(k) }

func (g *gen) appendMarker(b []byte, n int64, target int32, sent int64) []byte {
	b = append(b, "lg:"...)
	b = append(b, g.run...)
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, ':')
	if target < 0 {
		b = append(b, 'b')
	} else {
		b = strconv.AppendInt(b, int64(target), 10)
	}
	b = append(b, ':')
	return strconv.AppendInt(b, sent, 10)
}

func (g *gen) parseMarker(text []byte) (marker, bool) {
	var m marker
	rest, ok := bytes.CutPrefix(text, []byte("lg:"))
	if !ok {
		return m, false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(g.run))
	if !ok || len(rest) == 0 || rest[0] != ':' {
		return m, false
	}
	parts := bytes.Split(rest[1:], []byte{':'})
	if len(parts) == 4 {
		k, ok := bytes.CutPrefix(parts[3], []byte("k"))
		gen, err := strconv.Atoi(string(k))
		if !ok || err != nil || gen < 0 || gen > maxGen {
			return m, false
		}
		m.gen, parts = gen, parts[:3]
	}
	if len(parts) != 3 {
		return m, false
	}
	n, err1 := strconv.ParseInt(string(parts[0]), 10, 64)
	sent, err2 := strconv.ParseInt(string(parts[2]), 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		return m, false
	}
	m.n, m.sent, m.target = n, sent, -1
	if string(parts[1]) != "b" {
		t, err := strconv.ParseInt(string(parts[1]), 10, 32)
		if err != nil || t < 0 {
			return m, false
		}
		m.target = int32(t)
	}
	return m, true
}

// targetOf spreads messages over sessions round-robin, with a share of
// broadcasts when asked.
func (g *gen) targetOf(n int64) int32 {
	k := g.cfg.Sessions
	if k == 0 {
		return -1
	}
	if r := g.cfg.BroadcastRatio; r > 0 && float64(uint64(n)*2654435761%1000) < r*1000 {
		return -1
	}
	return int32(n % int64(k))
}

func (g *gen) weight(target int32) int64 {
	if target < 0 {
		return int64(len(g.live))
	}
	if int(target) < len(g.perSession) {
		return g.perSession[target]
	}
	return 0
}

// pubRecord is one published message (one attempt without -sender).
type pubRecord struct {
	n        int64
	target   int32
	ok       bool
	clean503 uint64 // -sender: key generations answered 503 (and only that)
	got503   bool   // -sender: some attempt got 503
	unknown  bool   // -sender: some attempt had an unknown outcome
}

// phaseOf is the phase at t.
func (g *gen) phaseOf(t time.Time) int {
	start := g.pubStartNano.Load()
	if start == 0 || t.UnixNano() < start {
		return 0
	}
	off := time.Duration(t.UnixNano() - start)
	p := 1
	for i, st := range g.cfg.FaultSchedule {
		if off >= st.At {
			p = i + 1
		}
	}
	return p
}

// phaseCount is the number of phases of the run.
func (g *gen) phaseCount() int { return 1 + max(1, len(g.cfg.FaultSchedule)) }

type worker struct {
	lat   *hist
	recs  []pubRecord
	fails map[string]int
	body  []byte
}

func (g *gen) publish(ctx context.Context, w *worker) {
	n := g.nextN.Add(1) - 1
	target := g.targetOf(n)
	sent := time.Now()
	session := ""
	if target >= 0 {
		session = g.sessionIDOf(int(target))
	}
	b := w.body[:0]
	b = append(b, `{"message":"`...)
	b = g.appendMarker(b, n, target, sent.UnixNano())
	b = append(b, '"')
	if target >= 0 {
		b = append(b, `,"sessionId":"`...)
		b = append(b, session...)
		b = append(b, '"')
	}
	b = append(b, '}')
	w.body = b
	var resp *http.Response
	req, err := g.wire.publishRequest(ctx, g.base, b, session)
	if err == nil {
		if g.cfg.Idempotency {
			req.Header.Set("Idempotency-Key", "lg-"+g.run+"-"+strconv.FormatInt(n, 10))
		}
		resp, err = g.client.Do(req)
	}
	ok := false
	why := ""
	if err != nil {
		why = "error"
		if ctx.Err() != nil {
			why = "canceled"
		} else if ne, isNet := errors.AsType[net.Error](err); isNet && ne.Timeout() {
			why = "timeout"
		}
	} else {
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case rerr != nil:
			why = "read error"
		case resp.StatusCode != http.StatusOK:
			why = strconv.Itoa(resp.StatusCode)
		case !g.wire.accepted(resp.StatusCode, body):
			why = "200 without success"
		default:
			ok = true
		}
	}
	if ok {
		w.lat.add(time.Since(sent))
		g.published.Add(1)
		g.expected.Add(g.weight(target))
	} else {
		w.fails[why]++
		g.failed.Add(1)
		if resp == nil {
			g.ambiguous.Add(g.weight(target))
		}
	}
	w.recs = append(w.recs, pubRecord{n: n, target: target, ok: ok})
}

// result is a run's figures: JSON for bench.sh, a markdown row for people.
type result struct {
	Label     string    `json:"label"`
	Kind      string    `json:"kind"` // "relay", "floor" or "centrifugo"
	Target    string    `json:"target"`
	Run       string    `json:"run"`
	Started   time.Time `json:"started"`
	Mode      string    `json:"mode"` // "load" or "idle"
	Params    params    `json:"params"`
	Connect   connectR  `json:"connect"`
	Publish   publishR  `json:"publish"`
	Delivery  deliveryR `json:"delivery"`
	Server    procR     `json:"server"`
	Generator procR     `json:"generator"`
	Idle      *idleR    `json:"idle,omitempty"`
	Soak      *soakR    `json:"soak,omitempty"`
	DynamoDB  *ddbR     `json:"dynamodb,omitempty"`
	Sender    *senderR  `json:"sender,omitempty"`
	Beats     beatsR    `json:"heartbeats"`
	Phases    []phaseR  `json:"phases,omitempty"`
	Fault     *faultR   `json:"fault,omitempty"`
	WallS     float64   `json:"wall_s"`
	OK        bool      `json:"ok"`
	Problems  []string  `json:"problems,omitempty"`
}

type params struct {
	Subscribers    int     `json:"subscribers"`
	Sessions       int     `json:"sessions"`
	BroadcastRatio float64 `json:"broadcast_ratio,omitempty"`
	Rate           float64 `json:"rate"`
	Concurrency    int     `json:"concurrency"`
	DurationS      float64 `json:"duration_s"`
	ReconnectMeanS float64 `json:"reconnect_mean_s,omitempty"`
	Idempotency    bool    `json:"idempotency,omitempty"`
	Sender         bool    `json:"sender,omitempty"`
	RetryForS      float64 `json:"retry_for_s,omitempty"`
	DrainS         float64 `json:"drain_s"`
}

// beatsR is the heartbeats the streams saw: the longest stretch of one
// connection without one (from its response or the previous heartbeat).
type beatsR struct {
	Gaps      int     `json:"gaps"`
	MaxGapS   float64 `json:"max_gap_s"`
	P99GapS   float64 `json:"p99_gap_s"`
	MaxStream int     `json:"max_gap_stream"`
	MaxAtS    float64 `json:"max_gap_end_s"` // from the start of publishing
}

// phaseR is one phase of a run: its answers and heartbeats.
type phaseR struct {
	Name     string           `json:"name"`
	StartS   float64          `json:"start_s"` // from the start of publishing
	EndS     float64          `json:"end_s"`   // -1: the end of the run
	Answers  map[string]int64 `json:"answers,omitempty"`
	MaxGapS  float64          `json:"max_heartbeat_gap_s"`
	GapCount int              `json:"heartbeat_gaps"`
	// Delivery latency of the messages first sent in this phase (with a
	// fault schedule only).
	LatencyMS *summary `json:"latency_ms,omitempty"`
}

type connectR struct {
	OK      int      `json:"ok"`
	Failed  int      `json:"failed"`
	TimeMS  summary  `json:"time_ms"`
	WallS   float64  `json:"wall_s"`
	Samples []string `json:"errors,omitempty"`
}

type publishR struct {
	OK        int64          `json:"ok"`
	Failed    int64          `json:"failed"`
	Failures  map[string]int `json:"failures,omitempty"`
	RatePerS  float64        `json:"rate_per_s"`
	LatencyMS summary        `json:"latency_ms"`
}

type deliveryR struct {
	Expected     int64   `json:"expected"`
	Delivered    int64   `json:"delivered"`
	Lost         int64   `json:"lost"`
	Duplicated   uint64  `json:"duplicated"`
	Misrouted    uint64  `json:"misrouted"`
	Corrupt      uint64  `json:"corrupt"`
	Foreign      uint64  `json:"foreign"`
	Unconfirmed  int64   `json:"unconfirmed"` // delivered although the POST failed
	Lied503      int64   `json:"lied_503"`    // -sender: messages delivered from an attempt answered 503
	Resets       uint64  `json:"resets"`
	Reconnects   uint64  `json:"reconnects"`
	Unplanned    uint64  `json:"unplanned_ends"`
	ConnErrors   uint64  `json:"reconnect_errors"`
	Drained      bool    `json:"drained"`
	DrainS       float64 `json:"drain_s"`
	MsgsPerS     float64 `json:"msgs_per_s"`       // accepted messages / (first send .. last delivery)
	DeliveriesPS float64 `json:"deliveries_per_s"` // deliveries / same span
	LatencyMS    summary `json:"latency_ms"`
}

type procR struct {
	PID          int     `json:"pid,omitempty"`
	RSSBeforeMB  float64 `json:"rss_before_mb"`
	RSSAfterMB   float64 `json:"rss_after_mb"`
	ThreadsAfter int     `json:"threads_after"`
	CPUS         float64 `json:"cpu_s"`   // during publishing + drain
	CPUPct       float64 `json:"cpu_pct"` // of one core, same window
	MaxOpenFiles int     `json:"max_open_files,omitempty"`
}

type idleR struct {
	Connections  int     `json:"connections"`
	BytesPerConn float64 `json:"bytes_per_conn"`
	ThreadsDelta int     `json:"threads_delta"`
}

func mb(b int64) float64 { return round3(float64(b) / (1 << 20)) }

// runLoad performs one run.
func runLoad(ctx context.Context, cfg config) (*result, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxRun)
	defer cancel()

	// Before any server is started: a child inherits the limit.
	if _, err := raiseFileLimit(cfg.Subscribers + cfg.Concurrency + 64); err != nil {
		return nil, err
	}
	kind := "relay"
	var w wire = relayWire{}
	if cfg.wire != nil {
		w = cfg.wire
	}
	switch {
	case cfg.Floor:
		fp, err := startFloorProcess(ctx)
		if err != nil {
			return nil, err
		}
		defer fp.Stop()
		cfg.Target, cfg.ServerPID, kind = fp.URL, fp.PID, "floor"
	case cfg.Centrifugo != "":
		cp, cw, err := startCentrifugo(ctx, cfg.Centrifugo)
		if err != nil {
			return nil, err
		}
		defer cp.Stop()
		cfg.Target, cfg.ServerPID, kind, w = cp.URL, cp.PID, "centrifugo", cw
	}
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want http://127.0.0.1:PORT", cfg.Target)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, err
	}
	var runID [4]byte
	_, _ = rand.Read(runID[:])
	g := &gen{
		cfg: cfg, run: hex.EncodeToString(runID[:]),
		base: strings.TrimSuffix(cfg.Target, "/"), hostport: u.Host, basePath: strings.TrimSuffix(u.Path, "/"),
		wire: w,
		client: &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil, // never through a proxy: loopback only
				MaxIdleConnsPerHost: cfg.Concurrency,
				MaxConnsPerHost:     cfg.Concurrency,
				DisableCompression:  true,
				IdleConnTimeout:     30 * time.Second,
			},
		},
	}
	defer g.client.CloseIdleConnections()
	res := &result{
		Label: cfg.Label, Kind: kind, Target: cfg.Target, Run: g.run, Started: time.Now().UTC().Truncate(time.Second),
		Mode: "load",
		Params: params{Subscribers: cfg.Subscribers, Sessions: cfg.Sessions, BroadcastRatio: cfg.BroadcastRatio,
			Rate: cfg.Rate, Concurrency: cfg.Concurrency, DurationS: cfg.Duration.Seconds(),
			ReconnectMeanS: cfg.ReconnectMean.Seconds(), Idempotency: cfg.Idempotency || cfg.Sender,
			Sender: cfg.Sender, DrainS: cfg.Drain.Seconds()},
	}
	runStart := time.Now()
	defer func() { res.WallS = round3(time.Since(runStart).Seconds()) }()
	if cfg.Sender {
		res.Params.RetryForS = cfg.RetryFor.Seconds()
		g.genSeen = &genSet{}
		g.answers = newAnswers(g.phaseCount())
	}
	if cfg.Idle {
		res.Mode = "idle"
	}
	problem := func(format string, args ...any) {
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
	}
	if _, err := g.health(ctx); err != nil {
		return nil, fmt.Errorf("server at %s is not healthy: %w", cfg.Target, err)
	}
	if cfg.ServerPID > 0 {
		res.Server.PID = cfg.ServerPID
		res.Server.MaxOpenFiles = maxOpenFiles(cfg.ServerPID)
		if n := res.Server.MaxOpenFiles; n > 0 && n < cfg.Subscribers+cfg.Concurrency+64 {
			problem("server pid %d may open only %d files, fewer than %d streams need", cfg.ServerPID, n, cfg.Subscribers)
		}
	}
	var fc *faultControl
	if cfg.FaultControl != "" {
		if err := checkLoopbackURL(cfg.FaultControl); err != nil {
			return nil, err
		}
		fc = &faultControl{base: strings.TrimSuffix(cfg.FaultControl, "/"), heldFor: cfg.FaultHeldFor, client: g.client}
		if _, err := fc.counts(ctx); err != nil {
			return nil, fmt.Errorf("fault proxy at %s: %w", cfg.FaultControl, err)
		}
		res.Fault = &faultR{Proxy: fc.base, HeldForS: cfg.FaultHeldFor.Seconds()}
	}
	var ddb *ddbTracker
	if cfg.DDBCounts != "" {
		if err := checkLoopbackURL(cfg.DDBCounts); err != nil {
			return nil, err
		}
		ddb = &ddbTracker{url: cfg.DDBCounts, client: g.client}
		if err := ddb.snap(ctx, "start"); err != nil {
			return nil, err
		}
	}

	srvBefore, genBefore := readProc(cfg.ServerPID), readProc(0)
	res.Server.RSSBeforeMB, res.Generator.RSSBeforeMB = mb(srvBefore.RSSBytes), mb(genBefore.RSSBytes)

	// Connect every subscriber.
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	ready := make(chan error, cfg.Subscribers)
	gate := make(chan struct{}, cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	connStart := time.Now()
	for i := range cfg.Subscribers {
		s := &subscriber{g: g, idx: i, session: -1, ready: ready, retryMS: 3000}
		if cfg.Sessions > 0 {
			s.session = i % cfg.Sessions
			s.sessionID = g.sessionIDOf(s.session)
		}
		g.subs = append(g.subs, s)
		wg.Go(func() { s.run(subCtx, gate) })
	}
	connected := 0
	for range cfg.Subscribers {
		select {
		case err := <-ready:
			if err == nil {
				connected++
			} else {
				res.Connect.Failed++
				if len(res.Connect.Samples) < 5 {
					res.Connect.Samples = append(res.Connect.Samples, err.Error())
				}
			}
		case <-ctx.Done():
			stopSubs()
			wg.Wait()
			return nil, fmt.Errorf("connecting %d subscribers: %w (%d connected)", cfg.Subscribers, ctx.Err(), connected)
		}
	}
	res.Connect.WallS = round3(time.Since(connStart).Seconds())
	res.Connect.OK = connected
	fmt.Fprintf(cfg.Log, "%s: %d/%d streams connected in %.1fs\n", label(cfg), connected, cfg.Subscribers, res.Connect.WallS)
	if res.Connect.Failed > 0 {
		problem("%d of %d streams failed to connect", res.Connect.Failed, cfg.Subscribers)
	}
	// Only streams connected now take part; the others have ended.
	if cfg.Sessions > 0 {
		g.perSession = make([]int64, cfg.Sessions)
	}
	for _, s := range g.subs {
		if s.connected {
			g.live = append(g.live, s)
			if s.session >= 0 {
				g.perSession[s.session]++
			}
		}
	}
	if ddb != nil {
		// A stream takes its lease right after its connected event: let
		// those land in the open phase, not in the idle one.
		sleepCtx(ctx, time.Second)
		_ = ddb.snap(ctx, "connected")
	}

	if cfg.Idle {
		sleepCtx(ctx, cfg.Settle)
		if ddb != nil {
			_ = ddb.snap(ctx, "idle")
		}
		after := readProc(cfg.ServerPID)
		res.Idle = &idleR{Connections: connected}
		if connected > 0 && after.OK && srvBefore.OK {
			res.Idle.BytesPerConn = round3(float64(after.RSSBytes-srvBefore.RSSBytes) / float64(connected))
			res.Idle.ThreadsDelta = after.Threads - srvBefore.Threads
		}
		res.Server.RSSAfterMB, res.Server.ThreadsAfter = mb(after.RSSBytes), after.Threads
		stopSubs()
		wg.Wait()
		g.finish(res, nil, time.Time{}, time.Time{})
		res.Generator.RSSAfterMB = mb(readProc(0).RSSBytes)
		if ddb != nil {
			res.DynamoDB = ddb.result(len(g.live), 0)
			res.DynamoDB.Reads = ddb.pollReads(g.cfg.PollInterval, len(g.live), g.partitions())
		}
		return res, nil
	}

	if cfg.IdlePhase > 0 {
		sleepCtx(ctx, cfg.IdlePhase)
		if ddb != nil {
			_ = ddb.snap(ctx, "idle")
		}
	}

	// Publish.
	var progressDone chan struct{}
	if cfg.Progress > 0 {
		progressDone = make(chan struct{})
		go g.progress(ctx, progressDone)
	}
	srvStart, genStart := readProc(cfg.ServerPID), readProc(0)
	pubStart := time.Now()
	g.pubStartNano.Store(pubStart.UnixNano())
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	schedDone := make(chan []string, 1)
	if fc != nil {
		go func() { schedDone <- fc.runSchedule(schedCtx, pubStart, cfg.FaultSchedule, cfg.Log) }()
	} else {
		schedDone <- nil
	}
	pubCtx, stopPub := context.WithDeadline(ctx, pubStart.Add(cfg.Duration))
	workers := make([]*worker, cfg.Concurrency)
	var pwg sync.WaitGroup
	var jobs chan struct{}
	if cfg.Rate > 0 {
		jobs = make(chan struct{}, cfg.Concurrency)
		pwg.Go(func() {
			defer close(jobs)
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			next := pubStart
			for i := 0; ; i++ {
				if d := time.Until(next); d > 0 && !sleepCtx(pubCtx, d) {
					return
				}
				select {
				case jobs <- struct{}{}:
				case <-pubCtx.Done():
					return
				}
				next = next.Add(interval)
			}
		})
	}
	for i := range workers {
		w := &worker{lat: newHist(), fails: map[string]int{}}
		workers[i] = w
		publish := g.publish
		if cfg.Sender {
			publish = g.send
		}
		pwg.Go(func() {
			// A publish started before the end of D runs to its answer
			// (bounded by the client timeout): a POST cut off mid-way
			// could be delivered without the generator knowing it was
			// accepted. With -sender it runs through its retries.
			if jobs != nil {
				for range jobs {
					publish(ctx, w)
				}
				return
			}
			for pubCtx.Err() == nil {
				publish(ctx, w)
			}
		})
	}
	pwg.Wait()
	stopPub()
	pubEnd := time.Now()
	if ddb != nil {
		_ = ddb.snap(ctx, "published")
	}
	// Drain: wait for every delivery owed, within bounds. Planned
	// reconnects stop first so that the tail is not held up by them.
	g.stopReconnects.Store(true)
	drainEnd := pubEnd.Add(cfg.Drain)
	// A POST that failed without an answer (timeout, broken connection)
	// may still have been accepted: wait for those too, within the bound.
	owed := func() int64 { return g.expected.Load() + g.ambiguous.Load() }
	for g.delivered.Load() < owed() && time.Now().Before(drainEnd) && ctx.Err() == nil {
		sleepCtx(ctx, 20*time.Millisecond)
	}
	res.Delivery.Drained = g.delivered.Load() >= g.expected.Load()
	res.Delivery.DrainS = round3(time.Since(pubEnd).Seconds())
	srvEnd, genEnd := readProc(cfg.ServerPID), readProc(0)
	if ddb != nil {
		_ = ddb.snap(ctx, "drained")
	}
	if progressDone != nil {
		close(progressDone)
	}
	stopSubs()
	wg.Wait()
	stopSched()
	schedErrs := <-schedDone
	if fc != nil {
		res.Fault.Errors = schedErrs
		for _, e := range schedErrs {
			problem("%s", e)
		}
		if c, err := fc.counts(ctx); err != nil {
			problem("%v", err)
		} else {
			res.Fault.Switches, res.Fault.Ops = c.Switches, c.Ops
			for _, v := range c.Ops {
				t := &res.Fault.Total
				t.Requests += v.Requests
				t.Throttled += v.Throttled
				t.Applied500 += v.Applied500
				t.LostReplies += v.LostReplies
				t.Outages += v.Outages
				t.Delayed += v.Delayed
			}
		}
	}

	window := time.Since(pubStart).Seconds()
	if srvStart.OK && srvEnd.OK {
		res.Server.CPUS = round3(srvEnd.CPUSec - srvStart.CPUSec)
		res.Server.CPUPct = round3(100 * res.Server.CPUS / window)
	}
	res.Generator.CPUS = round3(genEnd.CPUSec - genStart.CPUSec)
	res.Generator.CPUPct = round3(100 * res.Generator.CPUS / window)
	res.Server.RSSAfterMB, res.Server.ThreadsAfter = mb(srvEnd.RSSBytes), srvEnd.Threads
	res.Generator.RSSAfterMB, res.Generator.ThreadsAfter = mb(genEnd.RSSBytes), genEnd.Threads

	// Publishing figures.
	lat := newHist()
	res.Publish.Failures = map[string]int{}
	var recs []pubRecord
	for _, w := range workers {
		lat.merge(w.lat)
		recs = append(recs, w.recs...)
		for k, v := range w.fails {
			res.Publish.Failures[k] += v
		}
	}
	res.Publish.OK = g.published.Load()
	for _, v := range res.Publish.Failures {
		res.Publish.Failed += int64(v)
	}
	if cfg.Sender {
		// Failures are per attempt, and expected under faults; a message
		// fails only when it is given up.
		res.Publish.Failed = g.failed.Load()
	}
	if len(res.Publish.Failures) == 0 {
		res.Publish.Failures = nil
	}
	res.Publish.RatePerS = round3(float64(res.Publish.OK) / pubEnd.Sub(pubStart).Seconds())
	res.Publish.LatencyMS = lat.summary()
	if res.Publish.Failed > 0 && cfg.Sender {
		problem("%d messages given up after -retry-for %s (attempt failures: %v)", res.Publish.Failed, cfg.RetryFor, res.Publish.Failures)
	} else if res.Publish.Failed > 0 {
		problem("%d publishes failed: %v", res.Publish.Failed, res.Publish.Failures)
	}
	g.finish(res, recs, pubStart, pubEnd)
	res.Soak = g.soakResult()
	if ddb != nil {
		res.DynamoDB = ddb.result(len(g.live), res.Publish.OK)
		res.DynamoDB.Reads = ddb.pollReads(g.cfg.PollInterval, len(g.live), g.partitions())
	}
	return res, nil
}

// partitions is how many partitions the live streams follow together:
// broadcast, and each session with a stream.
func (g *gen) partitions() int {
	n := 1
	for _, c := range g.perSession {
		if c > 0 {
			n++
		}
	}
	return n
}

func label(cfg config) string {
	if cfg.Label != "" {
		return cfg.Label
	}
	switch {
	case cfg.Floor:
		return "floor"
	case cfg.Centrifugo != "":
		return "centrifugo"
	}
	return "relay"
}

// finish checks every live stream against the accepted messages and fills
// in delivery figures and the verdict.
func (g *gen) finish(res *result, recs []pubRecord, pubStart, pubEnd time.Time) {
	d := &res.Delivery
	lat := newHist()
	conn := newHist()
	okMsgs := map[int32][]int64{}
	failed := map[int64]bool{}
	for _, r := range recs {
		if r.ok {
			okMsgs[r.target] = append(okMsgs[r.target], r.n)
		} else {
			failed[r.n] = true
		}
	}
	var lastRecv int64
	for _, s := range g.subs {
		if !s.connected {
			continue
		}
		conn.add(s.connectTime)
		lat.merge(s.lat)
		d.Duplicated += s.dups
		d.Misrouted += s.misrouted
		d.Corrupt += s.corrupt
		d.Foreign += s.foreign
		d.Resets += s.resets
		d.Reconnects += s.reconnects
		d.Unplanned += s.unplanned
		d.ConnErrors += s.connErrors
		lastRecv = max(lastRecv, s.lastRecv)
		owed := okMsgs[-1] // broadcasts reach every stream
		if s.session >= 0 {
			owed = slices.Concat(owed, okMsgs[int32(s.session)])
		}
		for _, n := range owed {
			if s.seen.has(n) {
				d.Delivered++
			} else {
				d.Lost++
			}
		}
		d.Expected += int64(len(owed))
		for n := range failed {
			if s.seen.has(n) {
				d.Unconfirmed++
			}
		}
	}
	d.LatencyMS = lat.summary()
	res.Connect.TimeMS = conn.summary()
	if lastRecv > 0 && !pubStart.IsZero() {
		// From the first send to the last delivery, and at least D.
		span := max(time.Unix(0, lastRecv).Sub(pubStart), pubEnd.Sub(pubStart)).Seconds()
		d.MsgsPerS = round3(float64(res.Publish.OK) / span)
		d.DeliveriesPS = round3(float64(d.Delivered) / span)
	}
	g.finishBeats(res, pubStart)
	if g.answers != nil && res.Mode == "load" {
		g.finishSender(res, recs)
	}
	problem := func(format string, args ...any) {
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
	}
	if sr := res.Sender; sr != nil {
		if sr.Lied503 > 0 {
			problem("%d messages answered 503 (not stored) were delivered: %v", sr.Lied503, sr.Lied503Samples)
		}
		if n := sr.Answers[ans500.String()]; n > 0 {
			problem("%d answers were 500", n)
		}
		if n := sr.Answers[ansOther.String()]; n > 0 {
			problem("%d answers were neither 200, 429, 500, 503 nor 504: %v", n, res.Publish.Failures)
		}
	}
	if d.Lost > 0 {
		problem("%d deliveries lost (drained: %v)", d.Lost, d.Drained)
	}
	if d.Duplicated > 0 {
		problem("%d deliveries duplicated", d.Duplicated)
	}
	if d.Misrouted > 0 {
		problem("%d deliveries misrouted", d.Misrouted)
	}
	if d.Corrupt > 0 {
		problem("%d events corrupt (bad JSON or wrong sessionId)", d.Corrupt)
	}
	if d.Resets > 0 {
		problem("%d resume resets", d.Resets)
	}
	if res.Mode == "load" && res.Publish.OK == 0 {
		problem("no message was accepted")
	}
	res.OK = len(res.Problems) == 0
}

// progress prints a line every cfg.Progress until done: what was sent and
// delivered, and the server's RSS, threads and open streams.
func (g *gen) progress(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(g.cfg.Progress)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		p := readProc(g.cfg.ServerPID)
		active, err := g.health(ctx)
		activeS := strconv.Itoa(active)
		if err != nil {
			activeS, active = "?", -1
		}
		g.samplesMu.Lock()
		g.samples = append(g.samples, sample{
			T: round3(time.Since(start).Seconds()), Published: g.published.Load(), Delivered: g.delivered.Load(),
			Pending: g.expected.Load() - g.delivered.Load(), RSSMB: mb(p.RSSBytes), Threads: p.Threads, Active: active,
		})
		g.samplesMu.Unlock()
		fmt.Fprintf(g.cfg.Log, "%s t=%4.0fs published=%d failed=%d delivered=%d pending=%d server_rss_mb=%.1f server_threads=%d active_streams=%s gen_rss_mb=%.1f\n",
			label(g.cfg), time.Since(start).Seconds(), g.published.Load(), g.failed.Load(), g.delivered.Load(),
			g.expected.Load()-g.delivered.Load(), mb(p.RSSBytes), p.Threads, activeS, mb(readProc(0).RSSBytes))
	}
}

func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad URL %q", raw)
	}
	return checkLoopback(u.Host)
}

func writeResultJSON(path string, res *result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
