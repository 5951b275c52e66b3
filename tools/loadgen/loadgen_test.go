package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets -floor work under `go test` too: the floor is this binary
// started again with LOADGEN_SERVE_FLOOR set.
func TestMain(m *testing.M) {
	if addr := os.Getenv(floorEnv); addr != "" {
		if err := serveFloor(context.Background(), addr, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// smallLoad is a run that finishes in about two seconds: 24 streams over 4
// sessions, a quarter of the messages broadcast.
func smallLoad(target string) config {
	return config{
		Target: target, ServerPID: os.Getpid(),
		Subscribers: 24, Sessions: 4, BroadcastRatio: 0.25,
		Rate: 300, Concurrency: 4, Duration: 1500 * time.Millisecond, Drain: 3 * time.Second,
		MaxRun: 30 * time.Second,
	}
}

func startFloor(t *testing.T, f *floorServer) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFloorRunIsClean(t *testing.T) {
	res, err := runLoad(t.Context(), smallLoad(startFloor(t, newFloorServer())))
	if err != nil {
		t.Fatal(err)
	}
	d := res.Delivery
	if !res.OK || d.Lost != 0 || d.Duplicated != 0 || d.Misrouted != 0 || d.Corrupt != 0 {
		t.Fatalf("want a clean run, got problems %v, delivery %+v", res.Problems, d)
	}
	if res.Connect.OK != 24 || res.Connect.Failed != 0 {
		t.Errorf("connected %d, failed %d; want 24, 0", res.Connect.OK, res.Connect.Failed)
	}
	// 300/s for 1.5 s: about 450 messages; a loaded machine may fall behind.
	if res.Publish.OK < 150 || res.Publish.OK > 460 || res.Publish.Failed != 0 {
		t.Errorf("published %d ok, %d failed; want 150..460 and 0", res.Publish.OK, res.Publish.Failed)
	}
	// Each broadcast reaches 24 streams, each targeted message the 6 of its session.
	if d.Expected < res.Publish.OK*6 || d.Expected > res.Publish.OK*24 || d.Delivered != d.Expected || !d.Drained {
		t.Errorf("expected %d, delivered %d (drained %v) for %d messages", d.Expected, d.Delivered, d.Drained, res.Publish.OK)
	}
	if got := d.LatencyMS.Count; got != uint64(d.Delivered) {
		t.Errorf("latency samples %d, want one per delivery (%d)", got, d.Delivered)
	}
	l := d.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max && l.Max < 5000) {
		t.Errorf("implausible delivery latency %+v", l)
	}
	if res.Publish.LatencyMS.P50 <= 0 || res.Server.RSSAfterMB <= 0 || res.Generator.CPUS <= 0 {
		t.Errorf("missing figures: publish %+v, server %+v, generator %+v", res.Publish.LatencyMS, res.Server, res.Generator)
	}
	if row := markdownRow(res); strings.Count(row, "|") != strings.Count(strings.SplitN(markdownHeader, "\n", 2)[0], "|") {
		t.Errorf("markdown row and header disagree:\n%s\n%s", markdownHeader, row)
	}
}

// The checks must be able to fail: a server that drops, duplicates or
// misroutes is caught.
func TestFaultyServersAreCaught(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*floorServer)
		check func(deliveryR) bool
	}{
		{"drops", func(f *floorServer) {
			f.copies = func(n int) int {
				if n%7 == 3 {
					return 0
				}
				return 1
			}
		}, func(d deliveryR) bool { return d.Lost > 0 && d.Duplicated == 0 }},
		{"duplicates", func(f *floorServer) {
			f.copies = func(n int) int {
				if n%5 == 1 {
					return 2
				}
				return 1
			}
		}, func(d deliveryR) bool { return d.Duplicated > 0 && d.Lost == 0 }},
		{"misroutes", func(f *floorServer) { f.followAll = true }, func(d deliveryR) bool { return d.Misrouted > 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFloorServer()
			c.setup(f)
			cfg := smallLoad(startFloor(t, f))
			cfg.Duration, cfg.Drain = 700*time.Millisecond, 1500*time.Millisecond
			res, err := runLoad(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || !c.check(res.Delivery) {
				t.Fatalf("fault not reported: ok=%v problems=%v delivery=%+v", res.OK, res.Problems, res.Delivery)
			}
		})
	}
}

// -floor starts the floor as its own process and measures it through /proc.
func TestFloorProcess(t *testing.T) {
	cfg := smallLoad("")
	cfg.Floor, cfg.ServerPID = true, 0
	cfg.Duration = 500 * time.Millisecond
	res, err := runLoad(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Kind != "floor" || res.Server.PID == 0 || res.Server.PID == os.Getpid() || res.Server.RSSAfterMB <= 0 {
		t.Fatalf("floor process run: ok=%v problems=%v kind=%s server=%+v", res.OK, res.Problems, res.Kind, res.Server)
	}
}

func TestIdleMeasuresMemory(t *testing.T) {
	cfg := smallLoad("")
	cfg.Floor, cfg.ServerPID = true, 0
	cfg.Idle, cfg.Subscribers, cfg.Settle = true, 200, 300*time.Millisecond
	res, err := runLoad(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Idle == nil || res.Idle.Connections != 200 {
		t.Fatalf("idle run: ok=%v problems=%v idle=%+v", res.OK, res.Problems, res.Idle)
	}
	// A Go HTTP stream costs a few KiB to a few tens of KiB; RSS is coarse.
	if b := res.Idle.BytesPerConn; b < 1000 || b > 500000 {
		t.Errorf("bytes per idle connection %.0f: implausible", b)
	}
}

func TestOnlyLoopback(t *testing.T) {
	for _, bad := range []string{"http://192.0.2.1:3000", "http://example.com", "http://10.0.0.1"} {
		cfg := smallLoad(bad)
		if _, err := runLoad(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: want a loopback refusal, got %v", bad, err)
		}
	}
	for _, good := range []string{"127.0.0.1:1", "localhost:2", "[::1]:3"} {
		if err := checkLoopback(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	g := &gen{run: "abcd1234"}
	for _, target := range []int32{-1, 0, 7} {
		b := g.appendMarker(nil, 42, target, 1700000000123456789)
		m, ok := g.parseMarker(b)
		if !ok || m.n != 42 || m.target != target || m.sent != 1700000000123456789 {
			t.Errorf("marker %q parsed as %+v, %v", b, m, ok)
		}
	}
	other := &gen{run: "ffff0000"}
	if _, ok := other.parseMarker(g.appendMarker(nil, 1, -1, 1)); ok {
		t.Error("another run's marker was accepted")
	}
	for _, bad := range []string{"", "lg:", "lg:abcd1234:x:b:1", "lg:abcd1234:1:b", "hello"} {
		if _, ok := g.parseMarker([]byte(bad)); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFastFields(t *testing.T) {
	for _, c := range []struct {
		data, text, sid string
		null, ok        bool
	}{
		{`{"type":"webhook_message","id":"1-a","message":"lg:x","sessionId":null,"timestamp":1}`, "lg:x", "", true, true},
		{`{"type":"webhook_message","id":"1-a","message":"lg:x","sessionId":"s-1","timestamp":1}`, "lg:x", "s-1", false, true},
		{`{"sessionId":"s","message":"m","type":"webhook_message"}`, "m", "s", false, true},
		{`{"type":"webhook_message","message":"a\"b","sessionId":null}`, "", "", false, false},
	} {
		text, sid, null, ok := fastFields([]byte(c.data))
		if ok != c.ok || ok && (string(text) != c.text || string(sid) != c.sid || null != c.null) {
			t.Errorf("%s: got %q %q %v %v", c.data, text, sid, null, ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.9, 900}, {0.99, 990}, {1, 1000}} {
		if got := h.quantile(c.q); math.Abs(got-c.want)/c.want > 0.02 {
			t.Errorf("q%.2f = %.1f ms, want %.0f within 2%%", c.q, got, c.want)
		}
	}
	for v := int64(0); v < 1<<40; v = v*3 + 1 {
		if i := histIndex(v); histUpper(i) < v || i > 0 && histUpper(i-1) >= v {
			t.Fatalf("value %d in bucket %d (upper %d, previous upper %d)", v, i, histUpper(i), histUpper(i-1))
		}
	}
}

func TestCountingProxy(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".Query") {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 5000)) // 2 RRU
			return
		}
		_, _ = w.Write([]byte("{}"))
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	proxy := httptest.NewServer(newCountingProxy(u))
	defer proxy.Close()
	send := func(op, body string) {
		req, _ := http.NewRequest(http.MethodPost, proxy.URL+"/", strings.NewReader(body))
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810."+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	send("Query", "{}")
	send("Query", "{}")
	send("PutItem", "{}")
	send("TransactWriteItems", `{"TransactItems":[{},{}]}`)
	resp, err := http.Get(proxy.URL + countsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if q := c.Ops["Query"]; q.Requests != 2 || q.RRU != 4 {
		t.Errorf("Query: %+v, want 2 requests, 4 RRU", q)
	}
	if p := c.Ops["PutItem"]; p.Requests != 1 || p.WRU != 1 {
		t.Errorf("PutItem: %+v", p)
	}
	if tw := c.Ops["TransactWriteItems"]; tw.Requests != 1 || tw.WRU != 4 {
		t.Errorf("TransactWriteItems: %+v, want 4 WRU (2 per item)", tw)
	}
}

func TestItemKind(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"Item":{"pk":{"S":"conn#3"},"sk":{"S":"0a1b"}}}`, "(lease)"},
		{`{"Item":{"pk":{"S":"conn"},"sk":{"S":"0a1b"}}}`, "(lease)"},
		{`{"Key":{"pk":{"S":"connip#127.0.0.1"},"sk":{"S":"0a1b"}}}`, "(lease)"},
		{`{"ExpressionAttributeValues":{":now":{"N":"1"},":pk":{"S":"connsess#abc"}},"Select":"COUNT"}`, "(lease)"},
		{`{"Key":{"pk":{"S":"count#ip#127.0.0.1#29000"},"sk":{"S":"count"}}}`, "(rate)"},
		{`{"ExpressionAttributeValues":{":pk":{"S":"session#conn-1"}}}`, ""},
		{`{"ExpressionAttributeValues":{":pk":{"S":"broadcast"}}}`, ""},
	} {
		if got := itemKind([]byte(tc.body)); got != tc.want {
			t.Errorf("itemKind(%s) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	mk := func(kind string, msgs, p99, bytes float64, lost int64) *result {
		r := &result{Label: "x", Kind: kind, Mode: "load", OK: lost == 0}
		r.Delivery.MsgsPerS, r.Delivery.LatencyMS.P99, r.Delivery.Lost = msgs, p99, lost
		if bytes > 0 {
			r.Mode, r.Idle = "idle", &idleR{Connections: 10, BytesPerConn: bytes}
		}
		return r
	}
	reads := func(k, sessions int, perPoll float64) *result {
		r := &result{Label: "x", Kind: "relay", Mode: "idle", OK: true, Idle: &idleR{Connections: k}}
		r.Params.Subscribers, r.Params.Sessions = k, sessions
		parts := 1 + min(sessions, 1)
		r.DynamoDB = &ddbR{Reads: &pollReadsR{PollIntervalS: 1, Streams: k, Partitions: parts, WindowS: 10,
			Queries: int64(perPoll * 10), QueriesPerPoll: perPoll, PerPartition: perPoll / float64(parts)}}
		return r
	}
	write := func(name string, r *result) {
		if err := writeResultJSON(filepath.Join(dir, name), r); err != nil {
			t.Fatal(err)
		}
	}
	write("t1__relay__1.json", mk("relay", 900, 0, 0, 0))
	write("t1__floor__1.json", mk("floor", 1000, 0, 0, 0))
	write("t1__centrifugo__1.json", mk("centrifugo", 500, 0, 0, 0))
	write("t2__relay__1.json", mk("relay", 0, 30, 0, 2))
	write("t2__floor__1.json", mk("floor", 0, 10, 0, 0))
	write("t2__centrifugo__1.json", mk("centrifugo", 0, 20, 0, 0))
	write("t3__relay__1.json", mk("relay", 0, 11, 0, 0))
	write("t3__floor__1.json", mk("floor", 0, 10, 0, 0))
	write("t4__relay__1.json", mk("relay", 0, 0, 11000, 0))
	write("t4__floor__1.json", mk("floor", 0, 0, 10000, 0))
	write("t4__centrifugo__1.json", mk("centrifugo", 0, 0, 20000, 0))
	write("t5k-broadcast-1__relay__1.json", reads(1, 0, 1))
	write("t5k-broadcast-100__relay__1.json", reads(100, 0, 100))
	write("t5k-session-100__relay__1.json", reads(100, 1, 2.2))
	out := filepath.Join(dir, "bench.md")
	if err := writeReport(dir, out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	md := string(b)
	for _, want := range []string{
		"| T1 throughput |", "| 0.90x | 1.80x | >= 0.85x floor and >= 1.5x Centrifugo | met |",
		"| 3.00x | 1.50x | <= 1.2x floor and <= 1x Centrifugo | **not met** (floor, Centrifugo) |",
		"| 1.10x | - | <= 1.2x floor and <= 1x Centrifugo | met (Centrifugo not run) |",
		"| 1.10x | 0.55x | <= 1.1x floor | met |",
		"t2/relay#1: lost 2",
		"Centrifugo 0.000 s",
		"| T5 reads per poll |", "broadcast: k=1 1.00, k=100 100; one session: k=100 1.10 | - | - | - | - | 1 per partition | **not met** |",
		"| `broadcast` | 1 | 1 | 10.0s | 10 | 1.00 | 1.00 | 1 per partition | met |",
		"| `broadcast` | 100 | 1 | 10.0s | 1000 | 100 | 100 | 1 per partition | **not met** |",
		"| one session + `broadcast` | 100 | 2 | 10.0s | 22 | 2.20 | 1.10 | 1 per partition | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The order of the servers in a section: relay, floor, Centrifugo.
	sec := md[strings.Index(md, "## T1 throughput"):]
	if r, f, c := strings.Index(sec, "| relay |"), strings.Index(sec, "| floor |"), strings.Index(sec, "| centrifugo |"); !(r >= 0 && r < f && f < c) {
		t.Errorf("T1 section rows out of order (relay %d, floor %d, centrifugo %d):\n%s", r, f, c, sec)
	}
}

func TestPollReads(t *testing.T) {
	at := time.Unix(1000, 0)
	snap := func(name string, secs float64, queries, leaseQueries int64) namedCounts {
		return namedCounts{name, counts{At: at.Add(time.Duration(secs * float64(time.Second))), Ops: map[string]opCount{
			"Query": {Requests: queries}, "Query(lease)": {Requests: leaseQueries}, "PutItem(lease)": {Requests: queries},
		}}}
	}
	cases := []struct {
		name        string
		snaps       []namedCounts
		interval    time.Duration
		partitions  int
		perPoll     float64
		perPart     float64
		wantNothing bool
	}{
		{"k streams each reading", []namedCounts{snap("start", 0, 0, 0), snap("connected", 1, 50, 3), snap("idle", 11, 1050, 90)}, time.Second, 1, 100, 100, false},
		{"one reader per partition, 200ms", []namedCounts{snap("connected", 0, 0, 0), snap("idle", 10, 100, 7)}, 200 * time.Millisecond, 2, 2, 1, false},
		{"no idle phase", []namedCounts{snap("connected", 0, 0, 0), snap("drained", 10, 100, 0)}, time.Second, 1, 0, 0, true},
		{"no poll interval", []namedCounts{snap("connected", 0, 0, 0), snap("idle", 10, 100, 0)}, 0, 1, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := &ddbTracker{snaps: c.snaps}
			got := tr.pollReads(c.interval, 100, c.partitions)
			if c.wantNothing {
				if got != nil {
					t.Fatalf("want no figure, got %+v", got)
				}
				return
			}
			if got == nil || math.Abs(got.QueriesPerPoll-c.perPoll) > 1e-9 || math.Abs(got.PerPartition-c.perPart) > 1e-9 {
				t.Fatalf("got %+v, want %g per poll, %g per partition", got, c.perPoll, c.perPart)
			}
		})
	}
}
