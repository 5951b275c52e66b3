// Command costrun measures what chat windows cost on AWS, before and after
// the close beacon and the pause of hidden windows (`make cost`,
// infra/cost.sh). It runs the real stream and webhook bootstraps under
// tools/lambdaemu on DynamoDB Local, each function through a counting proxy
// (tools/loadgen -ddb-proxy), plays a scripted mix of chat windows in
// compressed time with a light load of real webhooks, and reports billed
// Lambda seconds per visible window-second, DynamoDB requests per visible
// window-minute, the share of billed time that served nobody, and the
// dollars they mean, into docs/cost.md between its markers.
//
//	costrun -stream build/.../stream/bootstrap -webhook build/.../webhook/bootstrap \
//	    -ddb http://127.0.0.1:P -stream-proxy http://127.0.0.1:Q -webhook-proxy http://127.0.0.1:R \
//	    -modes before,after -results DIR -doc docs/cost.md
//	costrun -report-only -results DIR -doc docs/cost.md   # the report of an earlier run
//
// It only talks to loopback addresses. Exit status: 0 when every check
// passed (nothing lost or duplicated, every beacon answered 204), 3 when one
// did not (the report is still written), 1 on errors, 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

type options struct {
	stream, webhook           string // bootstraps
	ddb                       string // DynamoDB Local itself: tables are made there
	streamProxy, webhookProxy string // the counting proxies in front of it
	settings                  Settings
	results                   string
	progress                  io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("costrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	s := &o.settings
	fs.StringVar(&o.stream, "stream", "", "bootstrap `binary` of the stream function")
	fs.StringVar(&o.webhook, "webhook", "", "bootstrap `binary` of the webhook function")
	fs.StringVar(&o.ddb, "ddb", "", "DynamoDB Local `URL` (loopback), where the run's tables are created")
	fs.StringVar(&o.streamProxy, "stream-proxy", "", "counting proxy `URL` the stream function reaches DynamoDB through")
	fs.StringVar(&o.webhookProxy, "webhook-proxy", "", "counting proxy `URL` the webhook function reaches DynamoDB through")
	modes := fs.String("modes", "before,after", "modes to run, comma-separated: before, after")
	fs.IntVar(&s.Windows, "windows", 40, "chat windows")
	fs.IntVar(&s.Compression, "compress", 30, "time compression `factor`: every duration of the script and of the stream's configuration is divided by it")
	fs.DurationVar(&s.Poll, "poll", 100*time.Millisecond, "POLL_INTERVAL of the stream function, wall time")
	fs.Float64Var(&s.Rate, "rate", 3, "webhooks per window-minute (emulated) to each window's session")
	fs.DurationVar(&s.Spread, "spread", 10*time.Minute, "windows open at random times within this (emulated)")
	fs.Uint64Var(&s.Seed, "seed", 1, "seed of the script")
	smoke := fs.Bool("smoke", false, "a quick check of the harness: 10 windows, compressed 120x, POLL_INTERVAL 100ms (the figures are not for the docs)")
	fs.StringVar(&o.results, "results", "", "directory for <mode>.json and the functions' logs (required)")
	doc := fs.String("doc", "", "write the report between the markers of this file (docs/cost.md)")
	commit := fs.String("commit", "unknown", "commit the report names")
	reportOnly := fs.Bool("report-only", false, "run nothing: report the <mode>.json of -results")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *smoke {
		s.Windows, s.Compression, s.Poll = 10, 120, 100*time.Millisecond
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "costrun: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments %q", fs.Args())
	}
	if o.results == "" {
		return bad("-results is required")
	}
	if err := s.validate(); err != nil {
		return bad("%v", err)
	}
	var run []string
	for m := range strings.SplitSeq(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case modeBefore, modeAfter:
			run = append(run, m)
		case "":
		default:
			return bad("-modes: unknown mode %q (want before, after)", m)
		}
	}
	if !*quiet {
		o.progress = stderr
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "costrun:", err)
		return 1
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return fail(err)
	}

	started := time.Now()
	results := map[string]*modeResult{}
	if *reportOnly {
		for _, m := range []string{modeBefore, modeAfter} {
			r, err := readResult(filepath.Join(o.results, m+".json"))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fail(err)
			}
			results[m] = r
		}
		if len(results) == 0 {
			return fail(fmt.Errorf("no before.json or after.json in %s", o.results))
		}
	} else {
		for _, u := range []struct{ flag, v string }{{"-ddb", o.ddb}, {"-stream-proxy", o.streamProxy}, {"-webhook-proxy", o.webhookProxy}} {
			if err := checkLoopback(u.v); err != nil {
				return bad("%s: %v", u.flag, err)
			}
		}
		if o.stream == "" || o.webhook == "" {
			return bad("-stream and -webhook are required")
		}
		for _, m := range run {
			r, err := runMode(ctx, o, m)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", m, err))
			}
			r.Commit = *commit
			if err := writeJSON(filepath.Join(o.results, m+".json"), r); err != nil {
				return fail(err)
			}
			results[m] = r
		}
	}

	var figs [2]*figures
	var info runInfo
	var ingestOps map[string]float64
	var ingestRRU, ingestWRU float64
	for i, m := range []string{modeBefore, modeAfter} {
		r := results[m]
		if r == nil {
			continue
		}
		f := compute(*r)
		figs[i] = &f
		if info.Settings.Windows != 0 && info.Settings != r.Settings {
			return fail(fmt.Errorf("before.json and after.json were made with different settings: run both modes again"))
		}
		info.Settings, info.Commit = r.Settings, r.Commit
		info.When = r.Started
		info.Wall += r.Wall
		info.LoadAvg = strings.TrimPrefix(info.LoadAvg+" / "+r.LoadAvg, " / ")
		ingestOps, ingestRRU, ingestWRU = ingest(*r)
	}
	if !*reportOnly {
		info.Wall = time.Since(started)
	}
	info.CPUs = runtime.NumCPU()
	report := render(info, figs[0], figs[1], ingestOps, ingestRRU, ingestWRU)
	fmt.Fprint(stdout, report)
	if *doc != "" {
		if *smoke {
			return bad("-doc with -smoke: smoke figures are not for the docs")
		}
		if err := updateDoc(*doc, report); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "costrun: wrote %s\n", *doc)
	}
	problems := checks(figs[0], figs[1])
	for _, p := range problems {
		fmt.Fprintln(stderr, "costrun: FAILED:", p)
	}
	if len(problems) > 0 {
		return 3
	}
	return 0
}

func (s Settings) validate() error {
	switch {
	case s.Windows < 1:
		return errors.New("-windows must be at least 1")
	case s.Compression < 1:
		return errors.New("-compress must be at least 1")
	case s.Poll <= 0:
		return errors.New("-poll must be positive")
	case s.Rate <= 0:
		return errors.New("-rate must be positive")
	case s.Spread < 0:
		return errors.New("-spread must not be negative")
	}
	return nil
}

// checks are the must-be-zero figures of the run.
func checks(fs ...*figures) []string {
	var out []string
	for _, f := range fs {
		if f == nil {
			continue
		}
		for _, c := range []struct {
			what string
			n    int
		}{
			{"messages lost", f.Lost}, {"messages duplicated", f.Duplicated}, {"unexpected messages", f.Unexpected},
			{"misrouted messages", f.Misrouted}, {"resets", f.Resets}, {"webhooks not accepted", f.SendFailed},
			{"close beacons not answered 204", f.BeaconsNot204}, {"stream requests failed", f.StreamErrors},
		} {
			if c.n != 0 {
				out = append(out, fmt.Sprintf("%s: %d %s", f.Mode, c.n, c.what))
			}
		}
	}
	return out
}

// runMode plays the script once in mode and collects what was billed and
// read.
func runMode(ctx context.Context, o options, mode string) (*modeResult, error) {
	s := o.settings
	r := &modeResult{Mode: mode, Settings: s, Started: time.Now()}
	logf := func(format string, a ...any) {
		if o.progress != nil {
			fmt.Fprintf(o.progress, "costrun: %s: "+format+"\n", append([]any{mode}, a...)...)
		}
	}
	table := fmt.Sprintf("cost-%s-%d", mode, time.Now().UnixMilli())
	if err := createTable(ctx, o.ddb, table); err != nil {
		return nil, err
	}
	logs, err := os.Create(filepath.Join(o.results, mode+"-functions.log"))
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	out := &lockedWriter{w: logs}
	logger := slog.New(slog.NewJSONHandler(out, nil))

	// Both stream emulators run the same binary with the same environment:
	// on AWS a close beacon is one more invocation of the stream function.
	var emus []*lambdaemu.Emulator
	defer func() {
		for _, e := range emus {
			e.Close()
		}
	}()
	start := func(name, path string, env []string, timeout time.Duration, concurrency int) (*lambdaemu.Emulator, error) {
		e, err := lambdaemu.Start(ctx, lambdaemu.Function{
			Path: path, Name: name, Env: env, Timeout: timeout, Concurrency: concurrency,
			Stdout: out, Stderr: out, Logger: logger,
		})
		if err == nil {
			emus = append(emus, e)
		}
		return e, err
	}
	streamEnv := functionEnv(o.streamProxy, table, s.streamEnv()...)
	streams, err := start("StreamFunction", o.stream, streamEnv, s.lambdaTimeout(), 3*s.Windows+20)
	if err != nil {
		return nil, err
	}
	var closes *lambdaemu.Emulator
	if mode == modeAfter {
		if closes, err = start("StreamFunction", o.stream, streamEnv, s.lambdaTimeout(), 16); err != nil {
			return nil, err
		}
	}
	webhooks, err := start("WebhookFunction", o.webhook, functionEnv(o.webhookProxy, table, webhookEnv()...), 30*time.Second, 16)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/api/webhook/stream", streams.FunctionURLHandler())
	if closes != nil {
		mux.Handle("/api/webhook/stream/close", closes.FunctionURLHandler())
	}
	mux.Handle("/api/webhook", webhooks.APIGatewayV2Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	counter := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	streamA, err := readCounts(ctx, counter, o.streamProxy)
	if err != nil {
		return nil, err
	}
	webhookA, err := readCounts(ctx, counter, o.webhookProxy)
	if err != nil {
		return nil, err
	}

	pg := &page{
		mode: mode, base: "http://" + ln.Addr().String(), s: s,
		t0:      time.Now().Add(time.Second),
		slack:   max(time.Second, 3*s.Poll),
		streams: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		posts:   &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}, Timeout: 20 * time.Second},
	}
	plans := s.plans(pg.slack)
	var end time.Duration
	for _, p := range plans {
		end = max(end, p.Close())
	}
	logf("%d windows, script of %v wall (%v emulated), relay %s", len(plans), end.Round(time.Second), s.emulated(end).Round(time.Minute), pg.base)
	windows := make([]*window, len(plans))
	var wg sync.WaitGroup
	for i, p := range plans {
		w := newWindow(pg, p)
		windows[i] = w
		wg.Go(func() { w.run(ctx) })
		wg.Go(func() { w.send(ctx) })
	}
	played := make(chan struct{})
	go func() { wg.Wait(); close(played) }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-played:
			break wait
		case <-tick.C:
			logf("t=%v: %d stream invocations over, %d webhooks", time.Since(pg.t0).Round(time.Second),
				len(streams.Invocations()), len(webhooks.Invocations()))
		}
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}

	// Invocations whose window has gone run on, as on AWS: wait for every
	// stream request to end (at most one planned stream duration).
	requested := 0
	for _, w := range windows {
		requested += len(w.result().Conns)
	}
	deadline := time.Now().Add(s.wall(config.Defaults().MaxStreamDuration) + 3*time.Second)
	logf("every window closed; waiting up to %v for the %d stream invocations to end", time.Until(deadline).Round(time.Second), requested)
	for len(streams.Invocations()) < requested && time.Now().Before(deadline) {
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return nil, context.Cause(ctx)
		}
	}
	streamB, err := readCounts(ctx, counter, o.streamProxy)
	if err != nil {
		return nil, err
	}
	webhookB, err := readCounts(ctx, counter, o.webhookProxy)
	if err != nil {
		return nil, err
	}
	srv.Close()
	for _, e := range emus {
		e.Close() // ends what still runs, which completes its record
	}
	emus = nil

	for _, w := range windows {
		r.Windows = append(r.Windows, w.result())
	}
	r.Streams = streams.Invocations()
	if closes != nil {
		r.Closes = closes.Invocations()
	}
	r.Webhooks = len(webhooks.Invocations())
	r.StreamDDB, r.WebhookDDB = diffOps(streamA, streamB), diffOps(webhookA, webhookB)
	r.Wall = time.Since(r.Started)
	r.LoadAvg = loadAvg()
	f := compute(*r)
	logf("done in %v: billed %.2f s per visible s, %.1f%% served nobody, %d webhooks, lost %d, duplicated %d",
		r.Wall.Round(time.Second), f.BilledPerVisible, 100*f.Unserved, f.Sent, f.Lost, f.Duplicated)
	return r, nil
}

// functionEnv is a function's whole environment: DynamoDB Local through
// endpoint, dummy credentials, and never the instance-metadata service.
func functionEnv(endpoint, table string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_ACCESS_KEY_ID=dummy",
		"AWS_SECRET_ACCESS_KEY=dummy",
		"AWS_REGION=us-east-1",
		"DYNAMODB_ENDPOINT=" + endpoint,
		"TABLE_NAME=" + table,
	}
	return append(env, extra...)
}

func createTable(ctx context.Context, endpoint, table string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := dynamostore.NewClient(ctx, endpoint)
	if err != nil {
		return err
	}
	if err := dynamostore.CreateTable(ctx, client, table); err != nil {
		return fmt.Errorf("table %s at %s: %w", table, endpoint, err)
	}
	return nil
}

// readCounts reads a counting proxy's running totals.
func readCounts(ctx context.Context, c *http.Client, proxy string) (map[string]opTotals, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(proxy, "/")+"/__loadgen/counts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("counts of %s: %w", proxy, err)
	}
	defer resp.Body.Close()
	var out struct {
		Ops map[string]opTotals `json:"ops"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("counts of %s: %w", proxy, err)
	}
	if out.Ops == nil {
		out.Ops = map[string]opTotals{}
	}
	return out.Ops, nil
}

// checkLoopback refuses any URL but http on a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want http://127.0.0.1:PORT", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", raw)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readResult(path string) (*modeResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r modeResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// lockedWriter serialises the writes of the functions' processes and the
// emulators' logger to one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
