// Command loadgen measures the relay: S Server-Sent Events subscribers over K
// sessions, webhooks published at rate R (or as fast as C workers go) for D,
// each carrying a unique marker with its send time, so that every delivery is
// timed and checked (lost, duplicated, misrouted). It reads the server's RSS
// and CPU from /proc, and carries its own yardstick: a minimal fan-out server
// (the "floor") measured the same way in the same run, so that figures
// become ratios that survive a noisy machine; it also measures Centrifugo,
// started from its binary on a configuration of its own (centrifugo.go).
//
//	go run ./tools/loadgen -target http://127.0.0.1:3000 -server-pid $(pgrep -n local) \
//	    -subscribers 1000 -rate 50 -duration 20s
//	go run ./tools/loadgen -floor -subscribers 1000 -rate 50 -duration 20s
//	go run ./tools/loadgen -target http://127.0.0.1:3000 -server-pid PID -idle -subscribers 10000
//	go run ./tools/loadgen -centrifugo "$(bash infra/centrifugo.sh install)" -subscribers 1000 -rate 50
//
// It only ever talks to loopback addresses. Other modes, used by
// infra/bench.sh:
//
//	loadgen -serve-floor 127.0.0.1:0            # just the floor server; prints its URL
//	loadgen -ddb-proxy http://127.0.0.1:8000    # counting proxy in front of DynamoDB Local
//	loadgen -report DIR -out docs/benchmarks.md # results of a bench run -> markdown
//
// and by infra/reliability.sh:
//
//	loadgen -fault-proxy http://127.0.0.1:8000  # ddbfault proxy in front of DynamoDB Local; prints its URL
//	loadgen -target URL -sender -fault-control PROXY -fault-schedule weather@0s,outage@35s,weather@45s ...
//	loadgen -target URL -server-pid PID -mem-messages 50000 -mem-opens 3000 -mem-ttl 1m
//	loadgen -reliability-report DIR -out docs/reliability.md
//
// Exit status: 0 when the run met its checks (nothing lost, duplicated or
// misrouted, every stream connected, every publish accepted), 3 when it did
// not (the figures are still written), 1 on errors, 2 on bad flags.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := os.Getenv(floorEnv); addr != "" {
		if err := serveFloor(ctx, addr, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen floor:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.Target, "target", "", "base URL of the relay (loopback only), e.g. http://127.0.0.1:3000")
	fs.BoolVar(&cfg.Floor, "floor", false, "start the built-in minimal fan-out server on a free 127.0.0.1 port and target it")
	fs.StringVar(&cfg.Centrifugo, "centrifugo", "", "start this Centrifugo binary (v6) on a free 127.0.0.1 port with a generated config and target it: HTTP publish API, uni_sse streams with a connection JWT")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "PID of the server, for RSS/CPU/threads from /proc (set automatically with -floor)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 100, "S: SSE subscribers")
	fs.IntVar(&cfg.Sessions, "sessions", 0, "K: sessions the subscribers are spread over (subscriber i on session i%K); 0 = all broadcast-only")
	fs.Float64Var(&cfg.BroadcastRatio, "broadcast-ratio", 0, "with -sessions > 0: share of messages sent as broadcasts (0..1)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "R: messages per second; 0 = as fast as -concurrency workers go")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "C: publishing workers (and connections)")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "D: how long to publish")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "after D, wait at most this long for the last deliveries")
	fs.BoolVar(&cfg.Idle, "idle", false, "T4: open S idle subscribers and report the server's RSS per connection ((after-before)/S); publishes nothing")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "with -idle: wait this long after the last connect before reading RSS")
	fs.DurationVar(&cfg.IdlePhase, "idle-phase", 0, "keep the streams open this long with no traffic before publishing (with -ddb-counts: requests per idle stream-minute)")
	fs.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", 128, "connections being set up at once")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 15*time.Second, "bound on one connection attempt")
	fs.DurationVar(&cfg.ReconnectMean, "reconnect-mean", 0, "soak: each subscriber drops its connection after a random time with this mean and resumes with Last-Event-ID; 0 = never")
	fs.BoolVar(&cfg.Idempotency, "idempotency", false, "send an Idempotency-Key with every POST")
	fs.BoolVar(&cfg.Sender, "sender", false, "publish as a correct sender: 503 -> retry with a new Idempotency-Key, 504/500/no answer -> same key, 429 -> wait Retry-After; count answers by class and catch lying 503s")
	fs.DurationVar(&cfg.RetryFor, "retry-for", 2*time.Minute, "with -sender: give up on a message this long after its first attempt")
	fs.StringVar(&cfg.FaultControl, "fault-control", "", "base URL of a -fault-proxy to drive with -fault-schedule; its fault counts go into the result")
	schedule := fs.String("fault-schedule", "", "with -fault-control: rule sets by time from the start of publishing, e.g. weather@0s,outage@35s,weather@45s,clear@75s")
	fs.DurationVar(&cfg.FaultHeldFor, "fault-held-for", defaultHeldFor, "with -fault-schedule: how long the weather holds writers")
	memMessages := fs.Int("mem-messages", 0, "mode: memory run: RSS before and after this many messages, each to a session of its own (needs -target and -server-pid)")
	memOpens := fs.Int("mem-opens", 3000, "with -mem-messages: stream opens on random sessions after the messages")
	memTTL := fs.Duration("mem-ttl", time.Minute, "with -mem-messages: the server's MESSAGE_TTL; the sweep is triggered this long (+5 s) after the last message")
	memSamples := fs.String("mem-samples", "0s,30s,60s,90s,120s,150s", "with -mem-messages: read RSS at these times after the sweep")
	relReport := fs.String("reliability-report", "", "mode: read soak.json, fault.json, mem.json and meta.txt from this directory and write the reliability report (-out); exit 3 when a must-be-zero figure is not 0")
	fs.DurationVar(&cfg.Progress, "progress", 0, "print a progress line (published, delivered, pending, server RSS/threads, open streams) this often; 0 = never")
	fs.StringVar(&cfg.DDBCounts, "ddb-counts", "", "URL of a counting proxy's counts (http://127.0.0.1:P"+countsPath+"): report DynamoDB requests per stream-minute and per message")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 0, "with -ddb-counts: the server's POLL_INTERVAL; also count Queries of message partitions per poll interval while idle (the -idle-phase, or -settle with -idle)")
	fs.StringVar(&cfg.Label, "label", "", "name of the run in reports")
	fs.DurationVar(&cfg.MaxRun, "max-run", 0, "hard bound on the whole run (default: derived from the other durations)")
	jsonOut := fs.String("json", "", "write the result as JSON to this file (- for stdout)")
	markdown := fs.Bool("markdown", false, "print the result as a markdown table row (with header)")
	quiet := fs.Bool("quiet", false, "no progress notes on stderr")
	serveFloorAddr := fs.String("serve-floor", "", "mode: only serve the floor on this address (e.g. 127.0.0.1:0) until interrupted")
	proxyUpstream := fs.String("ddb-proxy", "", "mode: serve a counting reverse proxy in front of this DynamoDB (Local) endpoint until interrupted")
	faultUpstream := fs.String("fault-proxy", "", "mode: serve ddbfault's fault-injecting proxy in front of this DynamoDB (Local) endpoint until interrupted; control: POST "+faultRulesPath+" {\"weather\":true} | {\"outage\":true} | {}")
	faultSeed := fs.Uint64("fault-seed", 1, "with -fault-proxy: seed of the fault choices")
	proxyAddr := fs.String("proxy-addr", "127.0.0.1:0", "with -ddb-proxy or -fault-proxy: listen address")
	reportDir := fs.String("report", "", "mode: read the *.json results of a bench run in this directory and write markdown")
	reportOut := fs.String("out", "-", "with -report: output file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	switch {
	case *serveFloorAddr != "":
		if err := serveFloor(ctx, *serveFloorAddr, stdout); err != nil {
			return fail(err)
		}
		return 0
	case *proxyUpstream != "":
		if err := serveProxy(ctx, *proxyAddr, *proxyUpstream, stdout); err != nil {
			return fail(err)
		}
		return 0
	case *faultUpstream != "":
		if err := serveFaultProxy(ctx, *proxyAddr, *faultUpstream, *faultSeed, stdout); err != nil {
			return fail(err)
		}
		return 0
	case *relReport != "":
		failures, err := writeReliabilityReport(*relReport, *reportOut)
		if err != nil {
			return fail(err)
		}
		for _, f := range failures {
			fmt.Fprintln(stderr, "loadgen: FAILED:", f)
		}
		if len(failures) > 0 {
			return 3
		}
		return 0
	case *reportDir != "":
		if err := writeReport(*reportDir, *reportOut); err != nil {
			return fail(err)
		}
		return 0
	}
	if !*quiet {
		cfg.Log = stderr
	}
	if *memMessages > 0 {
		var samples []time.Duration
		for _, f := range strings.Split(*memSamples, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < 0 {
				fmt.Fprintf(stderr, "loadgen: -mem-samples %q: want durations such as 0s,30s,60s\n", *memSamples)
				return 2
			}
			samples = append(samples, d)
		}
		r, err := runMem(ctx, memConfig{Target: cfg.Target, ServerPID: cfg.ServerPID, Messages: *memMessages, Opens: *memOpens,
			Concurrency: cfg.Concurrency, TTL: *memTTL, Samples: samples, Label: cfg.Label, Log: cfg.Log})
		if err != nil {
			return fail(err)
		}
		if *jsonOut != "" {
			if err := writeJSONFile(*jsonOut, r); err != nil {
				return fail(err)
			}
		}
		printMem(stdout, r)
		if !r.OK {
			for _, p := range r.Problems {
				fmt.Fprintln(stderr, "loadgen: PROBLEM:", p)
			}
			return 3
		}
		return 0
	}
	var err error
	if cfg.FaultSchedule, err = parseSchedule(*schedule); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	res, err := runLoad(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	if *jsonOut != "" {
		if err := writeResultJSON(*jsonOut, res); err != nil {
			return fail(err)
		}
	}
	if *markdown {
		fmt.Fprintln(stdout, markdownHeader)
		fmt.Fprintln(stdout, markdownRow(res))
	}
	if *jsonOut != "-" && !*markdown {
		printSummary(stdout, res)
	}
	if !res.OK {
		for _, p := range res.Problems {
			fmt.Fprintln(stderr, "loadgen: PROBLEM:", p)
		}
		return 3
	}
	return 0
}

const markdownHeader = "| run | server | S | K | R | C | D | published ok / failed | msg/s (e2e) | publish p50/p99 ms | delivery p50 / p90 / p99 / max ms | lost | dup | misrouted | connect p99 ms | server CPU % | server RSS MB | bytes/idle conn |\n" +
	"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

func markdownRow(r *result) string {
	rate := "max"
	if r.Params.Rate > 0 {
		rate = fmt.Sprintf("%g", r.Params.Rate)
	}
	d := r.Delivery
	idle := "-"
	if r.Idle != nil {
		idle = fmt.Sprintf("%.0f", r.Idle.BytesPerConn)
	}
	lbl := r.Label
	if lbl == "" {
		lbl = r.Mode
	}
	if r.Idle != nil { // nothing published: only connections and memory count
		return fmt.Sprintf("| %s | %s | %d | %d | - | - | - | - | - | - | - | - | - | - | %.1f | - | %.1f | %s |",
			lbl, r.Kind, r.Params.Subscribers, r.Params.Sessions, r.Connect.TimeMS.P99, r.Server.RSSAfterMB, idle)
	}
	return fmt.Sprintf("| %s | %s | %d | %d | %s | %d | %gs | %d / %d | %.0f | %.2f / %.2f | %.2f / %.2f / %.2f / %.2f | %d | %d | %d | %.1f | %.0f | %.1f | %s |",
		lbl, r.Kind, r.Params.Subscribers, r.Params.Sessions, rate, r.Params.Concurrency, r.Params.DurationS,
		r.Publish.OK, r.Publish.Failed, d.MsgsPerS, r.Publish.LatencyMS.P50, r.Publish.LatencyMS.P99,
		d.LatencyMS.P50, d.LatencyMS.P90, d.LatencyMS.P99, d.LatencyMS.Max, d.Lost, d.Duplicated, d.Misrouted,
		r.Connect.TimeMS.P99, r.Server.CPUPct, r.Server.RSSAfterMB, idle)
}

func printSummary(w io.Writer, r *result) {
	d := r.Delivery
	fmt.Fprintf(w, "%s (%s, %s) run %s: %d/%d streams connected (connect p50 %.1f ms, p99 %.1f ms)\n",
		cmp.Or(r.Label, r.Kind), r.Kind, r.Target, r.Run, r.Connect.OK, r.Params.Subscribers,
		r.Connect.TimeMS.P50, r.Connect.TimeMS.P99)
	if r.Idle != nil {
		fmt.Fprintf(w, "  idle: %d connections, server RSS %.1f -> %.1f MB = %.0f bytes/connection, threads %+d\n",
			r.Idle.Connections, r.Server.RSSBeforeMB, r.Server.RSSAfterMB, r.Idle.BytesPerConn, r.Idle.ThreadsDelta)
	} else {
		fmt.Fprintf(w, "  publish: %d ok, %d failed, %.0f/s, latency p50 %.2f ms p99 %.2f ms\n",
			r.Publish.OK, r.Publish.Failed, r.Publish.RatePerS, r.Publish.LatencyMS.P50, r.Publish.LatencyMS.P99)
		fmt.Fprintf(w, "  delivery: %d/%d, lost %d, duplicated %d, misrouted %d, corrupt %d, resets %d, reconnects %d; %.0f msg/s end to end\n",
			d.Delivered, d.Expected, d.Lost, d.Duplicated, d.Misrouted, d.Corrupt, d.Resets, d.Reconnects, d.MsgsPerS)
		fmt.Fprintf(w, "  delivery latency ms: p50 %.2f, p90 %.2f, p99 %.2f, max %.2f\n",
			d.LatencyMS.P50, d.LatencyMS.P90, d.LatencyMS.P99, d.LatencyMS.Max)
		fmt.Fprintf(w, "  server: CPU %.0f%% of a core, RSS %.1f MB, %d threads; generator CPU %.0f%%\n",
			r.Server.CPUPct, r.Server.RSSAfterMB, r.Server.ThreadsAfter, r.Generator.CPUPct)
	}
	if s := r.Soak; s != nil {
		verdict := "levelled off"
		if !s.Plateau {
			verdict = "STILL GROWING"
		}
		fmt.Fprintf(w, "  server RSS: max %.1f MB in the first half, %.1f MB in the second: %s; reconnects %d (unplanned ends %d), resets %d\n",
			s.RSSFirstHalfMaxMB, s.RSSSecondHalfMaxMB, verdict, d.Reconnects, d.Unplanned, d.Resets)
	}
	if s := r.Sender; s != nil {
		fmt.Fprintf(w, "  sender: %d messages accepted (%d after retries), %d given up (%d of them 503 only); answers %s\n",
			s.Accepted, s.Retried, s.Abandoned, s.AbandonedAll503, formatAnswers(s.Answers))
		fmt.Fprintf(w, "  503-but-delivered: %d messages (%d duplicate deliveries among them); 500s: %d\n",
			s.Lied503, s.Lied503Dups, s.Answers[ans500.String()])
	}
	if b := r.Beats; b.Gaps > 0 {
		fmt.Fprintf(w, "  heartbeats: %d gaps, p99 %.2fs, max %.2fs (stream %d, ending at t=%.1fs)\n", b.Gaps, b.P99GapS, b.MaxGapS, b.MaxStream, b.MaxAtS)
	}
	if len(r.Phases) > 2 || r.Sender != nil {
		for _, p := range r.Phases {
			fmt.Fprintf(w, "    phase %-17s from %6.1fs: max heartbeat gap %.2fs over %d gaps; answers %s\n",
				p.Name, p.StartS, p.MaxGapS, p.GapCount, formatAnswers(p.Answers))
		}
	}
	if f := r.Fault; f != nil {
		t := f.Total
		fmt.Fprintf(w, "  fault proxy: %d DynamoDB requests, %d throttled, %d applied then 500, %d replies lost, %d refused (outage), %d held\n",
			t.Requests, t.Throttled, t.Applied500, t.LostReplies, t.Outages, t.Delayed)
	}
	if r.DynamoDB != nil {
		fmt.Fprintf(w, "  DynamoDB per stream open: %s\n", formatOps(r.DynamoDB.PerStreamOpen))
		fmt.Fprintf(w, "  DynamoDB per idle stream-minute: %s\n", formatOps(r.DynamoDB.PerStreamMinute))
		fmt.Fprintf(w, "  DynamoDB per message: %s\n", formatOps(r.DynamoDB.PerMessage))
		if p := r.DynamoDB.Reads; p != nil {
			fmt.Fprintf(w, "  DynamoDB Queries per poll interval (%gs), idle: %.2f for %d streams on %d partitions = %.2f per partition (%d Queries in %.1fs)\n",
				p.PollIntervalS, p.QueriesPerPoll, p.Streams, p.Partitions, p.PerPartition, p.Queries, p.WindowS)
		}
	}
	if r.OK {
		fmt.Fprintln(w, "  OK")
	} else {
		fmt.Fprintln(w, "  NOT OK: "+strings.Join(r.Problems, "; "))
	}
}

// formatAnswers renders answer counts as "200 9800, 503 12, ..." (nonzero
// classes, in class order).
func formatAnswers(m map[string]int64) string {
	var parts []string
	for i := range nClasses {
		if v := m[answerClass(i).String()]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", answerClass(i), v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func printMem(w io.Writer, r *memR) {
	fmt.Fprintf(w, "%s (memory run) run %s: %d/%d messages to as many sessions in %.1fs, %d/%d stream opens on random sessions in %.1fs\n",
		r.Label, r.Run, r.Published, r.Messages, r.PublishS, r.OpensOK, r.Opens, r.OpensS)
	fmt.Fprintf(w, "  server RSS: %.1f MB before, %.1f MB after the load; sweep triggered %.0fs after the last message (answer %d)\n",
		r.RSSBeforeMB, r.RSSAfterLoadMB, r.TriggerAfterS, r.TriggerStatus)
	for _, s := range r.Samples {
		fmt.Fprintf(w, "    t=%6.1fs %-40s RSS %.1f MB\n", s.T, s.Phase, s.RSSMB)
	}
	if r.OK {
		fmt.Fprintln(w, "  OK")
	} else {
		fmt.Fprintln(w, "  NOT OK: "+strings.Join(r.Problems, "; "))
	}
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
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

func readResult(path string) (*result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

var errNoResults = errors.New("no results")
