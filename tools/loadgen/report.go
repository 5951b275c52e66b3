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
// named <test>__<kind>__<repeat>.json (kind: relay or floor), and a meta.txt
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

// testSpec says how a test is judged.
type testSpec struct {
	id, title, what string
	metric          string                  // what the headline figure is
	value           func(*result) float64   // headline figure of a run
	better          func(a, b float64) bool // a is better than b
	target          string
	met             func(ratio float64) bool
}

func higher(a, b float64) bool { return a > b }
func lower(a, b float64) bool  { return a < b }

var specs = []testSpec{
	{
		id: "t1", title: "T1 throughput", what: "100 broadcast subscribers, R=0 (as fast as C=16 workers go)",
		metric: "messages/s end to end (accepted messages / time from first send to last delivery)",
		value:  func(r *result) float64 { return r.Delivery.MsgsPerS }, better: higher,
		target: ">= 0.7x floor", met: func(x float64) bool { return x >= 0.7 },
	},
	{
		id: "t2", title: "T2 fan-out latency", what: "1000 broadcast subscribers, 50 msg/s",
		metric: "delivery p99 (ms)",
		value:  func(r *result) float64 { return r.Delivery.LatencyMS.P99 }, better: lower,
		target: "<= 1.5x floor", met: func(x float64) bool { return x <= 1.5 },
	},
	{
		id: "t3", title: "T3 targeted", what: "1000 subscribers on 1000 sessions, 500 msg/s, each message to one session",
		metric: "delivery p99 (ms)",
		value:  func(r *result) float64 { return r.Delivery.LatencyMS.P99 }, better: lower,
		target: "<= 1.5x floor", met: func(x float64) bool { return x <= 1.5 },
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
		target: "<= 1.2x floor", met: func(x float64) bool { return x <= 1.2 },
	},
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
		return a.kind > b.kind // relay before floor
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
	p("| repeats | %s per test and server, alternating relay and floor; the tables show the best run of each, all runs are in the appendix |\n", orDash(meta["repeat"]))
	if meta["quick"] == "1" {
		p("| mode | **quick** (BENCH_QUICK=1: shortened durations, fewer connections; not the published set) |\n")
	}
	p("\n")
	p("**relay** is the local adapter (`build/host/local`, embedded memory store, `RATE_LIMIT_PER_MINUTE=0`, `SESSION_RATE_LIMIT_PER_MINUTE=0`, `REPLAY_COUNT=0`, logs to a file). ")
	p("**floor** is loadgen's built-in minimal fan-out server (same wire format: POST appends to an in-memory log per target and wakes its readers; no auth, validation, history, store, logs), run as its own process and measured the same way in the same run. ")
	p("The machine is shared (other builds and tests run at the same time), so absolute figures are noisy: the targets are ratios to the floor. ")
	p("Generator and server share the machine's CPUs. Every run checks every delivery: lost, duplicated and misrouted must be 0.\n\n")

	// Summary.
	p("## Targets\n\n")
	p("| test | figure | relay | floor | ratio | target | verdict |\n|---|---|---:|---:|---:|---|---|\n")
	for _, spec := range specs {
		rr, rAll := best(spec, pick(runs, spec.id, "relay"))
		fr, fAll := best(spec, pick(runs, spec.id, "floor"))
		if rr == nil || fr == nil {
			p("| %s | %s | %s | %s | - | %s | not run |\n", spec.title, spec.metric, fmtVals(rAll), fmtVals(fAll), spec.target)
			continue
		}
		rv, fv := spec.value(rr), spec.value(fr)
		ratio := rv / fv
		verdict := "**not met**"
		if spec.met(ratio) {
			verdict = "met"
		}
		p("| %s | %s | %s (runs: %s) | %s (runs: %s) | %.2fx | %s | %s |\n", spec.title, spec.metric, fmtNum(rv), fmtVals(rAll), fmtNum(fv), fmtVals(fAll), ratio, spec.target, verdict)
	}
	var bad []string
	for _, r := range runs {
		d := r.res.Delivery
		if d.Lost > 0 || d.Duplicated > 0 || d.Misrouted > 0 || d.Corrupt > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s#%d: lost %d, duplicated %d, misrouted %d, corrupt %d", r.test, r.kind, r.rep, d.Lost, d.Duplicated, d.Misrouted, d.Corrupt))
		}
	}
	if len(bad) == 0 {
		p("| all runs (T1-T5) | lost / duplicated / misrouted | 0 / 0 / 0 | 0 / 0 / 0 | - | 0 everywhere | met |\n")
	} else {
		p("| all runs (T1-T5) | lost / duplicated / misrouted | %s | | - | 0 everywhere | **not met** |\n", strings.Join(bad, "; "))
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
		rr, _ := best(spec, pick(runs, spec.id, "relay"))
		fr, _ := best(spec, pick(runs, spec.id, "floor"))
		if rr == nil && fr == nil {
			continue
		}
		p("## %s\n\n%s. Headline figure: %s; target %s.\n\n", spec.title, spec.what, spec.metric, spec.target)
		p("%s\n", markdownHeader)
		for _, r := range []*result{rr, fr} {
			if r != nil {
				p("%s\n", markdownRow(r))
			}
		}
		if rr != nil && fr != nil {
			switch spec.id {
			case "t4":
				p("\nServer threads added: relay %+d, floor %+d. RSS per connection is (RSS after - RSS before) / connections, %s after the last connect; it includes Go's GC headroom, in both.\n",
					rr.Idle.ThreadsDelta, fr.Idle.ThreadsDelta, "a few seconds")
			default:
				p("\nServer CPU per 1000 accepted messages: relay %.3f s, floor %.3f s (server CPU seconds during publishing and drain / accepted messages x 1000).\n",
					perK(rr), perK(fr))
			}
		}
		p("\n")
	}

	// T5.
	t5 := map[string][]benchRun{}
	var t5ids []string
	for _, r := range runs {
		if strings.HasPrefix(r.test, "t5") && r.kind == "relay" {
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
