package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
)

// A reliability run (infra/reliability.sh) leaves in one directory:
//
//	meta.txt        key=value lines: commands, run times, machine
//	soak.json       the memory-store soak (a result)
//	fault.json      DynamoDB Local through the fault proxy (a result)
//	mem.json        the memory run (a memR)
//	*-relay.log     each relay's stderr (JSON log lines, and GODEBUG=gctrace=1 lines for mem)
//
// writeReliabilityReport turns them into docs/reliability.md and returns the
// must-be-zero figures (and requirements of the runs) that failed.

// relayLog is what a relay's log says, counted.
type relayLog struct {
	Lines    int
	Levels   map[string]int
	Statuses map[int]int    // webhook requests by status
	Messages map[string]int // by msg
	Errors   map[string]int // webhook request errors by text, 5xx only
	Panics   int
	Other    map[string]int // lines that are not JSON log records (the AWS SDK's own warnings), by shape
	GC       []string       // last gctrace lines
	Scav     []string       // last scavtrace lines
	Found    bool
}

func readRelayLog(path string) relayLog {
	l := relayLog{Levels: map[string]int{}, Statuses: map[int]int{}, Messages: map[string]int{}, Errors: map[string]int{}, Other: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return l
	}
	defer f.Close()
	l.Found = true
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		l.Lines++
		switch {
		case bytes.HasPrefix(line, []byte("gc ")):
			if !gcFullRE.Match(line) {
				continue // cut by a log line written in the middle of it
			}
			l.GC = append(l.GC, string(line))
			if len(l.GC) > 5 {
				l.GC = l.GC[1:]
			}
			continue
		case bytes.HasPrefix(line, []byte("scav ")):
			l.Scav = append(l.Scav, string(line))
			if len(l.Scav) > 3 {
				l.Scav = l.Scav[1:]
			}
			continue
		case bytes.HasPrefix(line, []byte("panic:")), bytes.Contains(line, []byte("goroutine ")) && bytes.Contains(line, []byte("[running]")):
			l.Panics++
			continue
		case len(line) == 0:
			continue
		case line[0] != '{':
			shape := string(line)
			if f := strings.Fields(shape); len(f) > 3 && f[0] == "SDK" {
				shape = "SDK " + strings.Join(f[3:], " ") // without the date and time
			}
			l.Other[errorShape(shape)]++
			continue
		}
		var e struct {
			Level  string `json:"level"`
			Msg    string `json:"msg"`
			Status int    `json:"status"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		l.Levels[e.Level]++
		l.Messages[e.Msg]++
		if e.Msg == "webhook request" {
			l.Statuses[e.Status]++
			if e.Status >= 500 && e.Error != "" {
				l.Errors[strconv.Itoa(e.Status)+": "+errorShape(e.Error)]++
			}
		}
	}
	return l
}

// errorShape drops the numbers from an error text, so that errors of one
// kind count together.
func errorShape(s string) string {
	var b strings.Builder
	digits := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !digits {
				b.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > 160 {
		out = out[:160] + "..."
	}
	return out
}

func readMemResult(path string) (*memR, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r memR
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// zeroCheck is one must-be-zero figure.
type zeroCheck struct {
	name  string
	value int64
}

func runChecks(r *result) []zeroCheck {
	c := []zeroCheck{
		{"lost", r.Delivery.Lost},
		{"duplicated", int64(r.Delivery.Duplicated)},
		{"misrouted", int64(r.Delivery.Misrouted)},
		{"503-but-delivered", r.Delivery.Lied503},
	}
	var n500 int64
	if r.Sender != nil {
		n500 = r.Sender.Answers[ans500.String()]
	}
	return append(c, zeroCheck{"500 answers", n500})
}

func writeReliabilityReport(dir, out string) ([]string, error) {
	meta := readMeta(dir)
	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	runs := strings.Fields(meta["runs"])
	if len(runs) == 0 {
		runs = []string{"soak", "fault", "mem"}
	}
	ran := func(name string) bool { return slices.Contains(runs, name) }
	load := func(name string) *result {
		if !ran(name) {
			return nil
		}
		r, err := readResult(filepath.Join(dir, name+".json"))
		if err != nil {
			fail("%s: no result (%v)", name, err)
			return nil
		}
		return r
	}
	soak, fault := load("soak"), load("fault")
	var mem *memR
	var err error
	if ran("mem") {
		if mem, err = readMemResult(filepath.Join(dir, "mem.json")); err != nil {
			fail("mem: no result (%v)", err)
			mem = nil
		}
	}
	logs := map[string]relayLog{}
	for _, n := range []string{"soak", "fault", "mem"} {
		logs[n] = readRelayLog(filepath.Join(dir, n+"-relay.log"))
	}

	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cpu, memTotal, kernel := machineInfo()
	p("# Reliability\n\n")
	p("Written by `make reliability` (`infra/reliability.sh`, figures from `go run ./tools/loadgen`). Do not edit by hand: run it again. Not part of `make test`.\n\n")
	p("| | |\n|---|---|\n")
	p("| date | %s |\n", orDash(meta["started"]))
	p("| machine | %s CPUs (nproc), %s, %s RAM, Linux %s |\n", orDash(meta["nproc"]), cpu, memTotal, kernel)
	p("| Go | %s |\n", orDash(meta["go_version"]))
	p("| relay commit | %s |\n", orDash(meta["commit"]))
	p("| load average (1 min) at start / end | %s / %s |\n", orDash(meta["loadavg_start"]), orDash(meta["loadavg_end"]))
	p("| whole run | %s s (`make reliability`) |\n\n", orDash(meta["total_s"]))
	p("Everything runs on 127.0.0.1: the relay is the local adapter (`go run ./local`, built once), DynamoDB Local is started by `infra/dynamodb-local.sh start` with a state directory of its own and stopped at the end, AWS credentials are dummy static ones and `AWS_EC2_METADATA_DISABLED=true`. The machine is shared with other work, so latencies are noisy; the counts are not.\n\n")

	p("## What the answers promise, and what \"0\" means\n\n")
	p("The relay's answers to `POST /api/webhook` mean:\n\n")
	p("- **200**: stored, and it will reach every stream it targets exactly once;\n")
	p("- **503** (with `Retry-After`): NOT stored and never delivered: retry freely;\n")
	p("- **504**: outcome unknown (it may be stored): retry with the SAME `Idempotency-Key`;\n")
	p("- never **500**.\n\n")
	p("The publishers of these runs (`loadgen -sender`) act as a correct sender on that word: on 503 they retry with a NEW key, trusting that nothing was stored; on 504, a 500 or no answer at all they retry with the SAME key (and keep that key to the end, because its outcome is still open); on 429 they wait `Retry-After`. Every attempt of a message carries the message's one marker (`lg:<run>:<n>:<target>:<sent>`) plus `:k<g>`, the generation of the key it was sent with. Each stream checks every event it receives against the messages it is owed. The must-be-zero figures:\n\n")
	p("| figure | counts | why it must be 0 |\n|---|---|---|\n")
	p("| lost | (stream, message) pairs where the message got 200 and the stream is on its target, but the stream never received it | 200 promises delivery to every targeted stream |\n")
	p("| duplicated | deliveries of a marker a stream had already received, not explained by a lying 503 | exactly once, also across reconnects with `Last-Event-ID` and across 504 retries with the same key |\n")
	p("| misrouted | deliveries of a message to a stream on another session | messages reach only their target |\n")
	p("| 503-but-delivered | messages one of whose attempts was answered 503 and whose key generation from that attempt was delivered anyway | 503 promises not stored, never delivered: a sender that trusts it and retries with a new key would otherwise deliver twice |\n")
	p("| 500s | answers with status 500 (loadgen's count; the relay's own log is counted too) | never 500 |\n\n")
	p("Streams also check that every event names its own target and that no resume ends in a `reset` event; those problems would fail the run as well.\n\n")

	// Summary.
	p("## Summary\n\n")
	p("| run | accepted messages | streams | lost | duplicated | misrouted | 503-but-delivered | 500s | run time | verdict |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	summary := func(name, title string, r *result, minAccepted int64, minStreams int) {
		if r == nil {
			p("| %s | - | - | - | - | - | - | - | - | **not run** |\n", title)
			return
		}
		ok := r.OK
		for _, c := range runChecks(r) {
			if c.value != 0 {
				fail("%s: %s = %d (must be 0)", name, c.name, c.value)
				ok = false
			}
		}
		for _, pr := range r.Problems {
			fail("%s: %s", name, pr)
		}
		if r.Publish.OK < minAccepted {
			fail("%s: %d messages accepted, fewer than the %d the run must show", name, r.Publish.OK, minAccepted)
			ok = false
		}
		if r.Connect.OK < minStreams {
			fail("%s: %d streams connected, fewer than %d", name, r.Connect.OK, minStreams)
			ok = false
		}
		if n := logs[name].Statuses[500]; n > 0 {
			fail("%s: the relay logged %d answers with status 500", name, n)
			ok = false
		}
		if logs[name].Panics > 0 {
			fail("%s: the relay's log shows a panic", name)
			ok = false
		}
		if v := meta[name+"_leases_after"]; v != "" && v != "0" {
			fail("%s: %s leases left after every stream closed", name, v)
			ok = false
		}
		verdict := "**0 everywhere: met**"
		if !ok {
			verdict = "**NOT MET**"
		}
		var n500 int64
		if r.Sender != nil {
			n500 = r.Sender.Answers[ans500.String()]
		}
		p("| %s | %d | %d | %d | %d | %d | %d | %d | %s s | %s |\n", title, r.Publish.OK, r.Connect.OK,
			r.Delivery.Lost, r.Delivery.Duplicated, r.Delivery.Misrouted, r.Delivery.Lied503, n500, orDash(meta[name+"_s"]), verdict)
	}
	summary("soak", "1. soak, memory store", soak, 100000, 1000)
	summary("fault", "2. DynamoDB Local, fault proxy", fault, 10000, 1)
	memVerdict := "**not run**"
	if mem != nil {
		memVerdict = "all accepted and opened (figures below)"
		if !mem.OK {
			memVerdict = "**NOT MET**"
			for _, pr := range mem.Problems {
				fail("mem: %s", pr)
			}
		}
		if n := logs["mem"].Statuses[500]; n > 0 {
			fail("mem: the relay logged %d answers with status 500", n)
			memVerdict = "**NOT MET**"
		}
		p("| 3. memory, memory store | %d | %d opens | - | - | - | - | - | %s s | %s |\n", mem.Published, mem.OpensOK, orDash(meta["mem_s"]), memVerdict)
	}
	p("\n")
	if len(failures) > 0 {
		p("**FAILED:**\n\n")
		for _, f := range failures {
			p("- %s\n", f)
		}
		p("\n")
	}

	if soak != nil {
		writeSoakSection(&b, soak, meta, logs["soak"])
	}
	if fault != nil {
		writeFaultSection(&b, fault, meta, logs["fault"])
	}
	if mem != nil {
		writeMemSection(&b, mem, meta, logs["mem"])
	}

	if out == "-" {
		_, err = os.Stdout.Write(b.Bytes())
	} else {
		err = os.WriteFile(out, b.Bytes(), 0o644)
	}
	return failures, err
}

func writeRunCommon(p func(string, ...any), r *result, meta map[string]string, name string, log relayLog) {
	d := r.Delivery
	p("| | |\n|---|---|\n")
	p("| streams | %d connected of %d, over %d sessions; %.0f%% of the messages broadcast |\n", r.Connect.OK, r.Params.Subscribers, r.Params.Sessions, 100*r.Params.BroadcastRatio)
	p("| publishing | %.0f s at %g msg/s offered, %d workers; drain up to %.0f s |\n", r.Params.DurationS, r.Params.Rate, r.Params.Concurrency, r.Params.DrainS)
	if s := r.Sender; s != nil {
		p("| messages | %d accepted (%d of them after more than one attempt), %d given up after %.0f s of retries |\n", s.Accepted, s.Retried, s.Abandoned, r.Params.RetryForS)
		p("| answers (every attempt) | %s |\n", formatAnswers(s.Answers))
	}
	p("| deliveries | %d of %d owed; lost %d, duplicated %d, misrouted %d, 503-but-delivered %d, corrupt %d, resets %d |\n",
		d.Delivered, d.Expected, d.Lost, d.Duplicated, d.Misrouted, d.Lied503, d.Corrupt, d.Resets)
	p("| reconnects | %d resumes with `Last-Event-ID` (random client drops, mean %.0f s per stream, and %d streams ended by the relay: planned ends after `MAX_STREAM_DURATION`, or any other); %d reconnect attempts failed and were retried |\n",
		d.Reconnects, r.Params.ReconnectMeanS, d.Unplanned, d.ConnErrors)
	p("| delivery latency (from the first attempt's send) | p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms |\n", d.LatencyMS.P50, d.LatencyMS.P90, d.LatencyMS.P99, d.LatencyMS.Max)
	if b := r.Beats; b.Gaps > 0 {
		p("| heartbeat gaps | %d measured; p99 %.2f s, max %.2f s |\n", b.Gaps, b.P99GapS, b.MaxGapS)
	}
	p("| relay | CPU %.0f%% of a core, RSS %.1f MB at the end, %d threads |\n", r.Server.CPUPct, r.Server.RSSAfterMB, r.Server.ThreadsAfter)
	if v := meta[name+"_leases_after"]; v != "" {
		p("| leases left after every stream closed | %s |\n", v)
	}
	if log.Found {
		p("| relay log | %s |\n", formatLog(log))
	}
	p("| run time | %s s |\n\n", orDash(meta[name+"_s"]))
}

func formatLog(l relayLog) string {
	var st []int
	for k := range l.Statuses {
		st = append(st, k)
	}
	sort.Ints(st)
	var parts []string
	for _, k := range st {
		parts = append(parts, fmt.Sprintf("%d: %d", k, l.Statuses[k]))
	}
	s := "webhook requests by status " + strings.Join(parts, ", ")
	s += fmt.Sprintf("; %d warnings, %d errors, %d panics", l.Levels["WARN"], l.Levels["ERROR"], l.Panics)
	var other []string
	for k, v := range l.Other {
		other = append(other, fmt.Sprintf("%d x `%s`", v, strings.ReplaceAll(k, "|", "\\|")))
	}
	sort.Strings(other)
	if len(other) > 5 {
		other = append(other[:5], fmt.Sprintf("(%d more kinds)", len(other)-5))
	}
	if len(other) > 0 {
		s += "; other lines: " + strings.Join(other, "; ")
	}
	return s
}

func writeSoakSection(b *bytes.Buffer, r *result, meta map[string]string, log relayLog) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## 1. Soak: memory store, %d streams, random resumes\n\n", r.Params.Subscribers)
	p("The local adapter on its memory store (`%s`) takes %.0f s of publishing at %g msg/s over %d sessions. Each of the %d streams drops its connection after a random time (exponential, mean %.0f s) and resumes with the `Last-Event-ID` of the last event it consumed, as EventSource does; the relay also ends each stream by plan after `MAX_STREAM_DURATION`. Every delivery is checked. At the end every stream is closed and the relay's `activeConnections` must fall to 0. `MESSAGE_TTL=5m` is longer than the run, so every message stays retained, no resume meets an expired cursor, and the relay's RSS grows with the messages (run 3 gives the memory figures).\n\n",
		orDash(meta["soak_relay_env"]), r.Params.DurationS, r.Params.Rate, r.Params.Sessions, r.Params.Subscribers, r.Params.ReconnectMeanS)
	p("```\n%s\n```\n\n", orDash(meta["soak_cmd"]))
	writeRunCommon(p, r, meta, "soak", log)
}

func writeFaultSection(b *bytes.Buffer, r *result, meta map[string]string, log relayLog) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	if r.Fault == nil { // run without -fault-control
		r.Fault = &faultR{HeldForS: defaultHeldFor.Seconds()}
	}
	p("## 2. DynamoDB Local through the fault proxy\n\n")
	p("The local adapter on DynamoDB Local (`%s`), with `loadgen -fault-proxy` in between: `ddbfault.Injector.Handler` as a reverse proxy, whose rule set the run switches through the proxy's control endpoint (`POST /__ddbfault/rules`). The rule sets:\n\n",
		orDash(meta["fault_relay_env"]))
	p("- **clear**: no faults;\n")
	p("- **weather**: `ddbfault.Weather(%.0fs)`, with one rule more in front. `Weather` holds only `PutItem` message writes, which the relay makes for messages without an `Idempotency-Key`. Every message here has a key and goes in a `TransactWriteItems`, so the proxy holds 1%% of those too. The rules, in order (the first rule that matches a request and draws it decides; the fractions are of the requests the rules before let through):\n", r.Fault.HeldForS)
	for _, rule := range weatherRules(time.Duration(r.Fault.HeldForS * float64(time.Second))) {
		p("  - %s\n", describeRule(rule))
	}
	p("\n")
	p("- **outage**: every request refused (`ddbfault.Outage`: the proxy closes the connection without forwarding).\n\n")
	p("Publishers retry as correct senders (above) for up to %.0f s per message. Streams resume at random as in the soak, and the relay heartbeats every 2 s (`HEARTBEAT_INTERVAL=2s`): a heartbeat gap is the time one connection went without a `: heartbeat` comment, from its response or its previous heartbeat. DynamoDB Local and the fault proxy:\n\n", r.Params.RetryForS)
	p("```\n%s\n%s\n%s\n```\n\n", orDash(meta["ddb_local_cmd"]), orDash(meta["fault_proxy_cmd"]), orDash(meta["fault_cmd"]))
	writeRunCommon(p, r, meta, "fault", log)

	p("Delivery latency runs from the first attempt's send, so it includes the sender's retries (the outage alone holds a message for 10 s). Under the storm, streams also wait for missing sequence numbers: a number whose writer is still in flight, held or refused is waited for up to `HOLE_TIMEOUT` (2 s) before the stream closes it with a tombstone. The streams' own reads and tombstones are throttled too, and the SDK backs off before each retry.\n\n")
	p("By phase (times from the start of publishing; an answer counts in the phase it arrived in, a heartbeat gap in every phase it overlaps, a delivery in the phase its message was first sent in):\n\n")
	p("| phase | from - to (s) | 200 | 503 | 504 | 429 | 500 | no answer | other | max heartbeat gap (s) | gaps | delivery latency p50 / p99 / max (s), by first send |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, ph := range r.Phases {
		span := fmt.Sprintf("%.0f - %.0f", ph.StartS, ph.EndS)
		switch {
		case ph.Name == "before publishing":
			span = "connect"
		case ph.EndS < 0:
			span = fmt.Sprintf("%.0f - end (drain)", ph.StartS)
		}
		a := ph.Answers
		lat := "-"
		if l := ph.LatencyMS; l != nil {
			lat = fmt.Sprintf("%.2f / %.2f / %.2f", l.P50/1000, l.P99/1000, l.Max/1000)
		}
		p("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %.2f | %d | %s |\n", ph.Name, span, a["200"], a["503"], a["504"], a["429"], a["500"], a["no answer"], a["other"], ph.MaxGapS, ph.GapCount, lat)
	}
	p("\n")
	if f := r.Fault; f != nil {
		p("What the proxy did (DynamoDB requests of the relay, by operation):\n\n")
		p("| operation | requests | throttled | applied, then 500 | reply lost | refused (outage) | held |\n|---|---:|---:|---:|---:|---:|---:|\n")
		var ops []string
		for k := range f.Ops {
			ops = append(ops, k)
		}
		sort.Strings(ops)
		for _, k := range ops {
			o := f.Ops[k]
			p("| %s | %d | %d | %d | %d | %d | %d |\n", k, o.Requests, o.Throttled, o.Applied500, o.LostReplies, o.Outages, o.Delayed)
		}
		t := f.Total
		p("| **all** | %d | %d | %d | %d | %d | %d |\n\n", t.Requests, t.Throttled, t.Applied500, t.LostReplies, t.Outages, t.Delayed)
		if len(f.Switches) > 1 {
			p("Rule switches (proxy clock): ")
			var parts []string
			start := f.Switches[0].At
			for _, s := range f.Switches[1:] {
				parts = append(parts, fmt.Sprintf("%s at +%.1f s", s.Mode, s.At.Sub(start).Seconds()))
			}
			p("%s (from the proxy's start).\n\n", strings.Join(parts, ", "))
		}
	}
	if len(log.Errors) > 0 {
		p("The relay's reasons for its 5xx answers (from its log, numbers folded):\n\n| answer: error | count |\n|---|---:|\n")
		type kv struct {
			k string
			v int
		}
		var es []kv
		for k, v := range log.Errors {
			es = append(es, kv{k, v})
		}
		sort.Slice(es, func(i, j int) bool { return es[i].v > es[j].v || es[i].v == es[j].v && es[i].k < es[j].k })
		for i, e := range es {
			if i == 12 {
				p("| (%d more kinds) | |\n", len(es)-12)
				break
			}
			p("| `%s` | %d |\n", strings.ReplaceAll(e.k, "|", "\\|"), e.v)
		}
		p("\n")
	}
}

func writeMemSection(b *bytes.Buffer, r *memR, meta map[string]string, log relayLog) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## 3. Memory: does the relay give memory back after MESSAGE_TTL?\n\n")
	p("The local adapter on its memory store (`%s`). `MESSAGE_TTL=1m` is the shortest the configuration accepts (it must be at least twice the store's 30 s stale age). The run reads the relay's RSS (`VmRSS` from `/proc/PID/status`), sends %d messages each to a session of its own (no `Idempotency-Key`), opens %d streams on random sessions nobody sends to (each open waits for its `connected` event and closes), then waits until the TTL has passed since the last message. The memory store sweeps lazily: on an append, a stream open or a counter increment, at most once every min(1 min, TTL/2). So the run sends one more message to trigger the sweep and reads RSS at several times after that answer.\n\n",
		orDash(meta["mem_relay_env"]), r.Messages, r.Opens)
	p("```\n%s\n```\n\n", orDash(meta["mem_cmd"]))
	p("| when (s from the start) | what | relay RSS (MB) |\n|---:|---|---:|\n")
	for _, s := range r.Samples {
		p("| %.1f | %s | %.1f |\n", s.T, s.Phase, s.RSSMB)
	}
	p("\n")
	p("%d of %d messages accepted in %.1f s; %d of %d stream opens in %.1f s; sweep triggered %.0f s after the last message (answer %d). Run time %s s.\n\n",
		r.Published, r.Messages, r.PublishS, r.OpensOK, r.Opens, r.OpensS, r.TriggerAfterS, r.TriggerStatus, orDash(meta["mem_s"]))
	var after []string
	for _, s := range r.Samples {
		if strings.HasPrefix(s.Phase, "sweep ") {
			after = append(after, fmt.Sprintf("%.1f MB at %s", s.RSSMB, strings.TrimPrefix(s.Phase, "sweep ")))
		}
	}
	p("RSS: **%.1f MB before, %.1f MB after the load; after the sweep %s**.\n\n", r.RSSBeforeMB, r.RSSAfterLoadMB, strings.Join(after, ", "))
	p("How to read this. The sweep drops the expired messages, their partitions and the reader-made partitions at once, but that only turns them into garbage on the heap. Go collects it at the next GC, and a process with no allocations gets one only from the forced GC every 2 minutes. The background scavenger then returns the freed pages to the OS a little at a time. It does this lazily: here RSS stayed at its peak for minutes after the sweep, then fell in steps, each some time after a forced GC (see the GC lines below). So the samples run to %.0f s after the sweep. No setting was used to force this. Go on Linux already returns pages with `MADV_DONTNEED` (the `GODEBUG=madvdontneed=1` behaviour has been the default since Go 1.16), so that setting would change nothing. The relay ran with `GODEBUG=gctrace=1`, which only prints a line per GC.", lastOffset(r))
	if gcs := parseGC(log.GC); len(gcs) > 0 {
		big := gcs[0] // the GC that freed the most: the first after the sweep
		for _, g := range gcs {
			if g.end-g.live > big.end-big.live {
				big = g
			}
		}
		last := gcs[len(gcs)-1]
		p(" The GC that collected the swept data ran %.0f s into the relay's life and took the heap from %d MB to **%d MB live**; the last one, at %.0f s, left %d MB live.", big.at, big.end, big.live, last.at, last.live)
		p(" The last GC lines (`heap at start -> at end -> live MB`):\n\n```\n%s\n```\n\n", strings.Join(log.GC, "\n"))
	} else {
		p("\n\n")
	}
	p("Not measured here: idempotency records are kept for 24 hours whatever the TTL (`store.IdempotencyRetention`), so the same load sent with an `Idempotency-Key` per message keeps one record per key in memory for a day.\n")
}

// describeRule says what a ddbfault rule does, in words.
func describeRule(r ddbfault.Rule) string {
	ops := "every operation"
	if len(r.Ops) > 0 {
		ops = strings.Join(r.Ops, ", ")
	}
	if r.Contains != "" {
		ops += " with `" + r.Contains + "` in the body"
	}
	frac := r.Fraction
	if frac == 0 {
		frac = 1
	}
	what := r.Kind.String()
	switch r.Kind {
	case ddbfault.Pass:
		what = "passed on"
	case ddbfault.Throttle:
		shape := r.Throttle
		if shape == "" {
			shape = ddbfault.ProvisionedThroughputExceeded
		}
		what = "throttled (" + shape + ")"
	case ddbfault.ApplyThen500:
		what = "applied, then answered HTTP 500"
	case ddbfault.LostReply:
		what = "applied, then the reply lost (connection reset)"
	case ddbfault.Outage:
		what = "refused"
	}
	if r.Delay > 0 {
		what = "held " + r.Delay.String() + ", then " + what
	}
	return fmt.Sprintf("%s: %g%% %s", ops, 100*frac, what)
}

// gcLine is one GODEBUG=gctrace=1 line: when (seconds since the process
// started) and the heap at the start, at the end and live after it, in MB.
type gcLine struct {
	at                float64
	before, end, live int
}

// gcFullRE matches a whole gctrace line (not one cut by a log line written
// in the middle of it).
var gcFullRE = regexp.MustCompile(`^gc \d+ @[0-9.]+s \d+%: [^{]* MB goal, [^{]* \d+ P$`)

var gcRE = regexp.MustCompile(`^gc \d+ @([0-9.]+)s .* (\d+)->(\d+)->(\d+) MB`)

func parseGC(lines []string) []gcLine {
	var out []gcLine
	for _, l := range lines {
		m := gcRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var g gcLine
		g.at, _ = strconv.ParseFloat(m[1], 64)
		g.before, _ = strconv.Atoi(m[2])
		g.end, _ = strconv.Atoi(m[3])
		g.live, _ = strconv.Atoi(m[4])
		out = append(out, g)
	}
	return out
}

// lastOffset is how long after the trigger the last RSS sample was read.
func lastOffset(r *memR) float64 {
	if len(r.Samples) == 0 {
		return 0
	}
	return r.Samples[len(r.Samples)-1].T - r.TriggerAtS
}
