package main

import (
	"bufio"
	_ "embed"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A bench run (infra/bench.sh) leaves one JSON result per run in a directory,
// named <test>__<kind>__<repeat>.json (kind: relay, floor or centrifugo), and a meta.txt
// of key=value lines. writeReport turns them into docs/benchmarks.md.

type benchRun struct {
	test string
	kind string
	rep  int
	res  *result
}

// notes is the analysis of missed targets, appended to the report.
//
//go:embed notes.md
var notes string

// testSpec says how a test is judged: the relay's figure over the floor's,
// and over Centrifugo's where the target names it.
type testSpec struct {
	id, title, what string
	metric          string                  // what the headline figure is
	value           func(*result) float64   // headline figure of a run
	better          func(a, b float64) bool // a is better than b
	floorTarget     string
	metFloor        func(ratio float64) bool
	cfTarget        string                   // "": Centrifugo's figure is shown, not judged
	metCF           func(ratio float64) bool // nil with cfTarget ""
}

func higher(a, b float64) bool { return a > b }
func lower(a, b float64) bool  { return a < b }

func atLeast(x float64) func(float64) bool { return func(r float64) bool { return r >= x } }
func atMost(x float64) func(float64) bool  { return func(r float64) bool { return r <= x } }

// The targets are issue 15's.
var specs = []testSpec{
	{
		id: "t1", title: "T1 throughput", what: "100 broadcast subscribers, R=0 (as fast as C=16 workers go)",
		metric: "messages/s end to end (accepted messages / time from first send to last delivery)",
		value:  func(r *result) float64 { return r.Delivery.MsgsPerS }, better: higher,
		floorTarget: ">= 0.85x floor", metFloor: atLeast(0.85),
		cfTarget: ">= 1.5x Centrifugo", metCF: atLeast(1.5),
	},
	{
		id: "t2", title: "T2 fan-out latency", what: "1000 broadcast subscribers, 50 msg/s",
		metric: "delivery p99 (ms)",
		value:  func(r *result) float64 { return r.Delivery.LatencyMS.P99 }, better: lower,
		floorTarget: "<= 1.2x floor", metFloor: atMost(1.2),
		cfTarget: "<= 1x Centrifugo", metCF: atMost(1),
	},
	{
		id: "t3", title: "T3 targeted", what: "1000 subscribers on 1000 sessions, 500 msg/s, each message to one session",
		metric: "delivery p99 (ms)",
		value:  func(r *result) float64 { return r.Delivery.LatencyMS.P99 }, better: lower,
		floorTarget: "<= 1.2x floor", metFloor: atMost(1.2),
		cfTarget: "<= 1x Centrifugo", metCF: atMost(1),
	},
	{
		id: "t4", title: "T4 idle memory", what: "10000 idle broadcast subscribers",
		metric: "server RSS per idle connection (bytes)",
		value: func(r *result) float64 {
			if r.Idle == nil {
				return math.NaN()
			}
			return r.Idle.BytesPerConn
		}, better: lower,
		floorTarget: "<= 1.1x floor", metFloor: atMost(1.1),
	},
}

// target is the spec's whole target, as the report states it.
func (s testSpec) target() string {
	if s.cfTarget == "" {
		return s.floorTarget
	}
	return s.floorTarget + " and " + s.cfTarget
}

// kinds are the servers of a bench run, in the order the report shows them.
var kinds = []string{"relay", "floor", "centrifugo"}

// kindNames are the servers' names in prose.
var kindNames = map[string]string{"relay": "relay", "floor": "floor", "centrifugo": "Centrifugo"}

func kindRank(k string) int {
	if i := slices.Index(kinds, k); i >= 0 {
		return i
	}
	return len(kinds)
}

func readMeta(dir string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "meta.txt"))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func machineInfo() (cpu, mem, kernel string) {
	cpu, mem, kernel = "unknown", "unknown", "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return
}

func loadRuns(dir string) ([]benchRun, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*__*__*.json"))
	if err != nil {
		return nil, err
	}
	var runs []benchRun
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), "__")
		if len(parts) != 3 {
			continue
		}
		rep, _ := strconv.Atoi(parts[2])
		r, err := readResult(f)
		if err != nil {
			return nil, err
		}
		runs = append(runs, benchRun{test: parts[0], kind: parts[1], rep: rep, res: r})
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%w in %s", errNoResults, dir)
	}
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if a.test != b.test {
			return a.test < b.test
		}
		if a.rep != b.rep {
			return a.rep < b.rep
		}
		return kindRank(a.kind) < kindRank(b.kind)
	})
	return runs, nil
}

func pick(runs []benchRun, test, kind string) []benchRun {
	var out []benchRun
	for _, r := range runs {
		if r.test == test && r.kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// best returns the best run by the spec's figure (a noisy machine only ever
// makes figures worse), and every run's figure.
func best(spec testSpec, runs []benchRun) (*result, []float64) {
	var b *result
	var all []float64
	for _, r := range runs {
		v := spec.value(r.res)
		all = append(all, v)
		if math.IsNaN(v) || v == 0 && spec.better(1, 0) { // 0 throughput or no data: not a candidate
			continue
		}
		if b == nil || spec.better(v, spec.value(b)) {
			b = r.res
		}
	}
	return b, all
}

func fmtVals(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmtNum(v)
	}
	return strings.Join(s, ", ")
}

func writeReport(dir, out string) error {
	runs, err := loadRuns(dir)
	if err != nil {
		return err
	}
	meta := readMeta(dir)
	cpu, mem, kernel := machineInfo()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	date := meta["finished"]
	if date == "" {
		date = time.Now().UTC().Format(time.RFC3339)
	}
	goVersion := meta["go_version"]
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`infra/bench.sh`, figures from `go run ./tools/loadgen`). Do not edit by hand: run it again.\n\n")
	p("| | |\n|---|---|\n")
	p("| date | %s |\n", date)
	p("| machine | %d CPUs (nproc %s), %s, %s RAM, Linux %s |\n", runtime.NumCPU(), orDash(meta["nproc"]), cpu, mem, kernel)
	p("| Go | %s |\n", goVersion)
	if c := meta["commit"]; c != "" {
		p("| relay commit | %s |\n", c)
	}
	p("| load average (1 min) at start / end | %s / %s |\n", orDash(meta["loadavg_start"]), orDash(meta["loadavg_end"]))
	p("| repeats | %s per test and server, the order of the servers rotating; the tables show the best run of each, all runs are in the appendix |\n", orDash(meta["repeat"]))
	if v := meta["centrifugo"]; v != "" {
		p("| Centrifugo | %s (`go install` into the tool cache by `infra/centrifugo.sh`) |\n", v)
	}
	if meta["quick"] == "1" {
		p("| mode | **quick** (BENCH_QUICK=1: shortened durations, fewer connections; not the published set) |\n")
	}
	p("\n")
	p("**relay** is the local adapter (`build/host/local`, embedded memory store, `RATE_LIMIT_PER_MINUTE=0`, `SESSION_RATE_LIMIT_PER_MINUTE=0`, `REPLAY_COUNT=0`, logs to a file). ")
	p("**floor** is loadgen's built-in minimal fan-out server (same wire format: POST appends to an in-memory log per target and wakes its readers; no auth, validation, history, store, logs), run as its own process and measured the same way in the same run. ")
	p("**Centrifugo** is the real-time messaging server (v6, memory engine, no history or recovery, logs at level info to a file, usage statistics off), started by loadgen on a generated configuration bound to 127.0.0.1 and measured the same way: ")
	p("a message is a call of its server HTTP API (`POST /api/publish`, `X-API-Key`) with the relay's JSON body as the data, to the session's channel or to the channel `broadcast`; ")
	p("a stream is its unidirectional SSE endpoint (`GET /connection/uni_sse`) with a connection JWT (HS256) whose `channels` claim subscribes it server-side to `broadcast` and, with a session, to the session's channel, so it gets what a relay stream of that session gets; ")
	p("its connect push stands for the relay's connected event, and each publication's channel is checked against the message's target as the relay's `sessionId` is. ")
	p("The machine is shared (other builds and tests run at the same time), so absolute figures are noisy: the targets are ratios between servers measured in the same run. ")
	p("Generator and server share the machine's CPUs. Every run checks every delivery: lost, duplicated and misrouted must be 0.\n\n")

	// Summary.
	p("## Targets\n\n")
	p("| test | figure | relay | floor | Centrifugo | relay / floor | relay / Centrifugo | target | verdict |\n|---|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, spec := range specs {
		var vals [3]string
		var bestOf [3]float64
		for i, k := range kinds {
			b, all := best(spec, pick(runs, spec.id, k))
			vals[i], bestOf[i] = "-", math.NaN()
			if b != nil {
				bestOf[i] = spec.value(b)
				vals[i] = fmt.Sprintf("%s (runs: %s)", fmtNum(bestOf[i]), fmtVals(all))
			} else if len(all) > 0 {
				vals[i] = "no figure (runs: " + fmtVals(all) + ")"
			}
		}
		rel, fl, cf := bestOf[0], bestOf[1], bestOf[2]
		if math.IsNaN(rel) || math.IsNaN(fl) {
			p("| %s | %s | %s | %s | %s | - | - | %s | not run |\n", spec.title, spec.metric, vals[0], vals[1], vals[2], spec.target())
			continue
		}
		rf := rel / fl
		var missed []string
		if !spec.metFloor(rf) {
			missed = append(missed, "floor")
		}
		rc := "-"
		note := ""
		if spec.cfTarget != "" || !math.IsNaN(cf) {
			if math.IsNaN(cf) {
				note = " (Centrifugo not run)"
			} else {
				rc = fmt.Sprintf("%.2fx", rel/cf)
				if spec.metCF != nil && !spec.metCF(rel/cf) {
					missed = append(missed, "Centrifugo")
				}
			}
		}
		verdict := "met" + note
		if len(missed) > 0 {
			verdict = "**not met** (" + strings.Join(missed, ", ") + ")" + note
		}
		p("| %s | %s | %s | %s | %s | %.2fx | %s | %s | %s |\n", spec.title, spec.metric, vals[0], vals[1], vals[2], rf, rc, spec.target(), verdict)
	}
	readsSummary(p, runs)
	var bad []string
	for _, r := range runs {
		d := r.res.Delivery
		if d.Lost > 0 || d.Duplicated > 0 || d.Misrouted > 0 || d.Corrupt > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s#%d: lost %d, duplicated %d, misrouted %d, corrupt %d", r.test, r.kind, r.rep, d.Lost, d.Duplicated, d.Misrouted, d.Corrupt))
		}
	}
	if len(bad) == 0 {
		p("| all runs (T1-T5) | lost / duplicated / misrouted | 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 | - | - | 0 everywhere | met |\n")
	} else {
		p("| all runs (T1-T5) | lost / duplicated / misrouted | %s | | | - | - | 0 everywhere | **not met** |\n", strings.Join(bad, "; "))
	}
	var other []string
	for _, r := range runs {
		for _, pr := range r.res.Problems {
			if !strings.Contains(pr, "lost") && !strings.Contains(pr, "duplicated") && !strings.Contains(pr, "misrouted") {
				other = append(other, fmt.Sprintf("%s/%s#%d: %s", r.test, r.kind, r.rep, pr))
			}
		}
	}
	if len(other) > 0 {
		p("\nOther problems seen: %s.\n", strings.Join(other, "; "))
	}
	p("\n")

	// One section per test.
	for _, spec := range specs {
		var rows []*result
		byKind := map[string]*result{}
		for _, k := range kinds {
			if b, _ := best(spec, pick(runs, spec.id, k)); b != nil {
				rows = append(rows, b)
				byKind[k] = b
			}
		}
		if len(rows) == 0 {
			continue
		}
		p("## %s\n\n%s. Headline figure: %s; target %s.\n\n", spec.title, spec.what, spec.metric, spec.target())
		p("%s\n", markdownHeader)
		for _, r := range rows {
			p("%s\n", markdownRow(r))
		}
		var parts []string
		for _, k := range kinds {
			r := byKind[k]
			if r == nil {
				continue
			}
			if spec.id == "t4" {
				parts = append(parts, fmt.Sprintf("%s %+d", kindNames[k], r.Idle.ThreadsDelta))
			} else {
				parts = append(parts, fmt.Sprintf("%s %.3f s", kindNames[k], perK(r)))
			}
		}
		if spec.id == "t4" {
			p("\nServer threads added: %s. RSS per connection is (RSS after - RSS before) / connections, a few seconds after the last connect; it includes Go's GC headroom, in all.\n", strings.Join(parts, ", "))
		} else {
			p("\nServer CPU per 1000 accepted messages: %s (server CPU seconds during publishing and drain / accepted messages x 1000).\n", strings.Join(parts, ", "))
		}
		p("\n")
	}

	// T5.
	t5 := map[string][]benchRun{}
	var t5ids []string
	for _, r := range runs {
		if strings.HasPrefix(r.test, "t5-") && r.kind == "relay" {
			if _, ok := t5[r.test]; !ok {
				t5ids = append(t5ids, r.test)
			}
			t5[r.test] = append(t5[r.test], r)
		}
	}
	if len(t5ids) > 0 {
		slices.SortFunc(t5ids, func(a, b string) int { return strings.Compare(t5Order(a), t5Order(b)) })
		p("## T5 DynamoDB Local\n\n")
		p("The relay on DynamoDB Local (`DYNAMODB_ENDPOINT`), through loadgen's counting proxy (`-ddb-proxy`), which counts requests by `X-Amz-Target`. ")
		p("Rate limits are on but set far above the load (`100000000` per minute), so their counter writes are counted; every POST carries an `Idempotency-Key` (as Standard Webhooks senders do). ")
		p("RRU/WRU are estimates of what AWS would bill for the same requests (strongly consistent reads: 1 RRU per 4 KiB of response, at least 1; writes: 1 WRU per KiB; TransactWriteItems: 2 WRU per item). ")
		p("The streams first sit idle (phase *idle*, nothing sent) so that polling and leases are counted per stream-minute apart from the per-message cost. ")
		p("DynamoDB Local is a single Java process on this same 2-CPU machine, so its latency is far from DynamoDB's; read the request counts, not the latency, as what carries over to AWS.\n\n")
		p("| run | POLL_INTERVAL | S / K / R | published ok / failed | delivery p50 / p99 / max ms | lost / dup / misrouted | per stream open (and its first second of polling) | per idle stream-minute | per accepted message |\n|---|---|---|---:|---:|---:|---|---|---|\n")
		for _, id := range t5ids {
			for _, r := range t5[id] {
				x := r.res
				d := x.Delivery
				var open, idle, msg string = "-", "-", "-"
				if x.DynamoDB != nil {
					open, idle, msg = formatOps(x.DynamoDB.PerStreamOpen), formatOps(x.DynamoDB.PerStreamMinute), formatOps(x.DynamoDB.PerMessage)
				}
				p("| %s | %s | %d / %d / %g | %d / %d | %.0f / %.0f / %.0f | %d / %d / %d | %s | %s | %s |\n",
					id, t5Poll(id), x.Params.Subscribers, x.Params.Sessions, x.Params.Rate, x.Publish.OK, x.Publish.Failed,
					d.LatencyMS.P50, d.LatencyMS.P99, d.LatencyMS.Max, d.Lost, d.Duplicated, d.Misrouted, open, idle, msg)
			}
		}
		negative := false
		for _, id := range t5ids {
			for _, r := range t5[id] {
				if r.res.DynamoDB != nil {
					for _, v := range r.res.DynamoDB.PerMessage {
						negative = negative || v < 0
					}
				}
			}
		}
		if negative {
			p("\nA negative figure per message means the streams polled less often under load than idle: DynamoDB Local (one JVM on this 2-CPU machine, shared with the relay and the generator) answered more slowly, so each stream's poll cycle (interval + query time) got longer. On DynamoDB the per-message reads are the extra RRU of larger query responses, about 0.\n")
		}
		p("\nPer stream-minute under load (everything the streams and the ingest did while publishing, / stream-minutes):\n\n")
		for _, id := range t5ids {
			for _, r := range t5[id] {
				if r.res.DynamoDB != nil {
					p("- %s: %s\n", id, formatOps(r.res.DynamoDB.PerStreamMinuteLoad))
				}
			}
		}
		p("\nThe cost model built on these counts is in [cost.md](cost.md).\n\n")
	}
	writeReads(p, runs, len(t5ids) > 0)

	if strings.TrimSpace(notes) != "" {
		p("%s\n", strings.TrimSpace(notes))
	}

	// Appendix.
	p("## Appendix: every run\n\n%s\n", markdownHeader)
	for _, r := range runs {
		row := markdownRow(r.res)
		row = strings.Replace(row, "| "+r.res.Label+" |", fmt.Sprintf("| %s #%d |", r.test, r.rep), 1)
		p("%s\n", row)
	}
	p("\nColumns: S subscribers, K sessions (0: broadcast only), R messages/s (max: as fast as C workers go), D publishing time; msg/s (e2e) is accepted messages / (first send to last delivery); delivery latency is receive time - send time of each message at each subscriber; server CPU is %% of one core during publishing and drain; server RSS after the run.\n")

	if out == "-" {
		_, err = os.Stdout.WriteString(b.String())
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// readsTarget is the reads-per-poll target: one reader per partition per
// process. The window's two edges cut at most one poll of each reader, so a
// figure up to readsSlack per partition still meets it.
const (
	readsTarget = "1 per partition"
	readsSlack  = 1.5
)

// readsRuns are the runs of T5's reads per poll, broadcast-only first, by k.
func readsRuns(runs []benchRun) []benchRun {
	var rs []benchRun
	for _, r := range runs {
		if strings.HasPrefix(r.test, "t5k-") && r.kind == "relay" {
			rs = append(rs, r)
		}
	}
	slices.SortStableFunc(rs, func(a, b benchRun) int {
		sa, sb := a.res.Params.Sessions > 0, b.res.Params.Sessions > 0
		if sa != sb {
			if sa {
				return 1
			}
			return -1
		}
		return a.res.Params.Subscribers - b.res.Params.Subscribers
	})
	return rs
}

func reads(r benchRun) *pollReadsR {
	if r.res.DynamoDB == nil {
		return nil
	}
	return r.res.DynamoDB.Reads
}

// readsSummary is the targets table's row of T5's reads per poll.
func readsSummary(p func(string, ...any), runs []benchRun) {
	rs := readsRuns(runs)
	if len(rs) == 0 {
		return
	}
	byShape := map[bool][]string{}
	met := true
	for _, r := range rs {
		rd := reads(r)
		session := r.res.Params.Sessions > 0
		if rd == nil {
			met = false
			byShape[session] = append(byShape[session], fmt.Sprintf("k=%d -", r.res.Params.Subscribers))
			continue
		}
		met = met && rd.PerPartition <= readsSlack
		byShape[session] = append(byShape[session], fmt.Sprintf("k=%d %s", rd.Streams, fmtNum(rd.PerPartition)))
	}
	var fig []string
	if v := byShape[false]; len(v) > 0 {
		fig = append(fig, "broadcast: "+strings.Join(v, ", "))
	}
	if v := byShape[true]; len(v) > 0 {
		fig = append(fig, "one session: "+strings.Join(v, ", "))
	}
	verdict := "met"
	if !met {
		verdict = "**not met**"
	}
	p("| T5 reads per poll | DynamoDB Queries per poll interval per partition, k streams on one process | %s | - | - | - | - | %s | %s |\n",
		strings.Join(fig, "; "), readsTarget, verdict)
}

// writeReads is T5's table of reads per poll interval by streams per
// process (runs t5k-<shape>-<k>).
func writeReads(p func(string, ...any), runs []benchRun, underT5 bool) {
	rs := readsRuns(runs)
	if len(rs) == 0 {
		return
	}
	if !underT5 {
		p("## T5 DynamoDB Local\n\n")
	}
	p("### Reads per poll, by streams per process\n\n")
	p("k streams on one relay process (the local adapter on DynamoDB Local, `POLL_INTERVAL=1s`), all following `broadcast` only, then all on one session (which follows that session's partition and `broadcast`), idle, counted through the same proxy: ")
	p("Queries of message partitions (not of leases or counters) per poll interval, after the streams' opening. ")
	p("Streams that each read their own partitions make k Queries per partition per poll; one reader per partition per process makes 1, whatever k. ")
	p("Target: %s (a figure up to %g per partition meets it: the window's edges cut at most one poll of each reader).\n\n", readsTarget, readsSlack)
	p("| streams follow | k streams | partitions | window | Queries counted | Queries per poll | per partition | target | verdict |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rs {
		x := r.res
		follow := "`broadcast`"
		if x.Params.Sessions > 0 {
			follow = "one session + `broadcast`"
		}
		rd := reads(r)
		if rd == nil {
			p("| %s | %d | - | - | - | - | - | %s | no figure |\n", follow, x.Params.Subscribers, readsTarget)
			continue
		}
		verdict := "met"
		if rd.PerPartition > readsSlack {
			verdict = "**not met**"
		}
		p("| %s | %d | %d | %.1fs | %d | %s | %s | %s | %s |\n", follow, rd.Streams, rd.Partitions, rd.WindowS, rd.Queries,
			fmtNum(rd.QueriesPerPoll), fmtNum(rd.PerPartition), readsTarget, verdict)
	}
	p("\n")
}

func perK(r *result) float64 {
	if r.Publish.OK == 0 {
		return 0
	}
	return r.Server.CPUS / float64(r.Publish.OK) * 1000
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// t5 ids look like t5-t2-1s: shape, then poll interval.
func t5Poll(id string) string {
	parts := strings.Split(id, "-")
	return parts[len(parts)-1]
}

func t5Order(id string) string {
	poll := t5Poll(id)
	d, err := time.ParseDuration(poll)
	if err != nil {
		return id
	}
	return fmt.Sprintf("%012d-%s", -int64(d)+int64(time.Hour), id)
}
