package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func TestCounts(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int
	}{
		{40, []int{16, 16, 8}},
		{10, []int{4, 4, 2}},
		{3, []int{1, 1, 1}},
		{1, []int{1, 0, 0}},
		{7, []int{3, 3, 1}},
	} {
		if got := counts(tc.n, mix); !slices.Equal(got, tc.want) {
			t.Errorf("counts(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b span
		want time.Duration
	}{
		{"inside", span{at(0), at(10)}, span{at(2), at(5)}, 3 * time.Second},
		{"across the start", span{at(0), at(10)}, span{at(-5), at(4)}, 4 * time.Second},
		{"across the end", span{at(0), at(10)}, span{at(8), at(20)}, 2 * time.Second},
		{"apart", span{at(0), at(10)}, span{at(11), at(20)}, 0},
		{"touching", span{at(0), at(10)}, span{at(10), at(20)}, 0},
	} {
		if got := overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: overlap = %v, want %v", tc.name, got, tc.want)
		}
		if got := overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("%s, swapped: overlap = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDelivery(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		sent                  []string
		received              map[string]int
		lost, dup, unexpected int
	}{
		{"exact", []string{"a", "b"}, map[string]int{"a": 1, "b": 1}, 0, 0, 0},
		{"one lost", []string{"a", "b"}, map[string]int{"a": 1}, 1, 0, 0},
		{"one twice", []string{"a", "b"}, map[string]int{"a": 1, "b": 2}, 0, 1, 0},
		{"thrice counts two", []string{"a"}, map[string]int{"a": 3}, 0, 2, 0},
		{"not sent", []string{"a"}, map[string]int{"a": 1, "x": 1}, 0, 0, 1},
		{"nothing", nil, map[string]int{}, 0, 0, 0},
	} {
		lost, dup, unexpected := delivery(windowResult{Sent: tc.sent, Received: tc.received})
		if lost != tc.lost || dup != tc.dup || unexpected != tc.unexpected {
			t.Errorf("%s: lost %d, duplicated %d, unexpected %d; want %d, %d, %d",
				tc.name, lost, dup, unexpected, tc.lost, tc.dup, tc.unexpected)
		}
	}
}

func TestCompute(t *testing.T) {
	// One window, compressed 10x: visible 60 s of wall time (10 emulated
	// minutes), hidden past the grace from 70 s to 100 s while its stream
	// stayed connected until 90 s; a second invocation ran 20 s after its
	// client left; one close beacon.
	r := modeResult{
		Mode:     modeBefore,
		Settings: Settings{Windows: 1, Compression: 10, Poll: 200 * time.Millisecond, Rate: 3},
		Windows: []windowResult{{
			Class:           "background",
			Visible:         []span{{at(0), at(60)}},
			HiddenPastGrace: []span{{at(70), at(100)}},
			Conns:           []connRec{{Start: at(0), End: at(90), Ended: "planned"}, {Start: at(95), End: at(100), Ended: "error"}},
			Sent:            []string{"a", "b", "c"},
			Received:        map[string]int{"a": 1, "b": 2},
			Closes:          []closeRec{{Status: 204}, {Status: 404}},
		}},
		Streams: []lambdaemu.Invocation{
			{Duration: 90 * time.Second, Billed: 90 * time.Second, Init: time.Second},
			{Duration: 30 * time.Second, Billed: 30 * time.Second, ClientGone: true, ClientGoneAt: at(100), End: at(120)},
		},
		Closes: []lambdaemu.Invocation{{Billed: 100 * time.Millisecond}},
		StreamDDB: map[string]opTotals{
			"Query":          {Requests: 200, RRU: 200},
			"PutItem(lease)": {Requests: 20, WRU: 20},
		},
	}
	f := compute(r)
	total := 120.1
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"billed per visible", f.BilledPerVisible, total / 60},
		{"ran on", f.RanOn, 20 / total},
		{"hidden connected", f.HiddenConnected, 25 / total},
		{"unserved", f.Unserved, 45 / total},
		{"visible minutes", f.VisibleMinutes, 10},
		{"Query per minute", f.DDB["Query"], 20},
		{"lease puts per minute", f.DDB["PutItem(lease)"], 2},
		{"RRU", f.RRU, 20},
		{"WRU", f.WRU, 2},
		// 120 s of stream time = 1200 emulated s, 2 partitions, 1 RRU a Query.
		{"RRU at 1s", f.RRUAt1s, 2400.0 / 10},
		{"polled of nominal", f.Polled, 200 / (120 * 2 / 0.2)},
		{"$ Lambda duration", f.Dollars.LambdaDuration, total / 60 * 3600 * 1000 * 0.125 * 0.0000133334},
		{"$ Lambda requests", f.Dollars.LambdaRequests, 3 / (10.0 / 60) * 1000 * 0.2 / 1e6},
		{"$ DynamoDB", f.Dollars.DynamoDB, (20*0.125/1e6 + 2*0.625/1e6) * 60 * 1000},
		{"$ DynamoDB at 1s", f.Dollars.DynamoDBAt1s, (240*0.125/1e6 + 2*0.625/1e6) * 60 * 1000},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if f.Lost != 1 || f.Duplicated != 1 || f.Sent != 3 || f.Beacons != 2 || f.BeaconsNot204 != 1 || f.ColdStarts != 1 {
		t.Errorf("lost %d dup %d sent %d beacons %d (not 204: %d) cold starts %d; want 1 1 3 2 1 1",
			f.Lost, f.Duplicated, f.Sent, f.Beacons, f.BeaconsNot204, f.ColdStarts)
	}
	if got := checks(&f); len(got) != 4 {
		t.Errorf("checks = %q, want the lost and the duplicated message, the 404 beacon and the failed stream", got)
	}
	// One dollar figure known from docs/cost.md: a window whose stream runs
	// exactly while it is visible costs $6.00 of duration per 1000 hours.
	if d := (dollars{LambdaDuration: 1 * 3600 * 1000 * streamMemoryGB * lambdaPerGBSecond}).Total(); math.Abs(d-6.00) > 0.005 {
		t.Errorf("1 billed s per visible s = $%.4f per 1000 h, want $6.00", d)
	}
}

func TestDiffOps(t *testing.T) {
	a := map[string]opTotals{"Query": {Requests: 10, RRU: 10}, "GetItem": {Requests: 2, RRU: 2}}
	b := map[string]opTotals{"Query": {Requests: 15, RRU: 16}, "GetItem": {Requests: 2, RRU: 2}, "PutItem": {Requests: 1, WRU: 1}}
	got := diffOps(a, b)
	want := map[string]opTotals{"Query": {Requests: 5, RRU: 6}, "PutItem": {Requests: 1, WRU: 1}}
	if len(got) != len(want) || got["Query"] != want["Query"] || got["PutItem"] != want["PutItem"] {
		t.Errorf("diffOps = %+v, want %+v", got, want)
	}
}

func TestPlans(t *testing.T) {
	s := Settings{Windows: 40, Compression: 30, Poll: 100 * time.Millisecond, Rate: 3, Spread: 10 * time.Minute, Seed: 7}
	slack := time.Second
	ps := s.plans(slack)
	if again := s.plans(slack); len(again) != len(ps) || again[3].Session != ps[3].Session || !slices.Equal(again[3].Sends, ps[3].Sends) {
		t.Error("the same settings gave another script")
	}
	byClass := map[string]int{}
	for _, p := range ps {
		byClass[p.Class]++
		if p.Open < 0 || p.Open > s.wall(s.Spread) {
			t.Errorf("window %d opens at %v, outside the spread", p.Index, p.Open)
		}
		var want time.Duration
		for _, ph := range classByName(p.Class).Phases {
			want += ph.For / 30
		}
		if got := p.Close() - p.Open; got != want {
			t.Errorf("window %d (%s) lives %v, want %v", p.Index, p.Class, got, want)
		}
		for _, at := range p.Sends {
			if at <= p.Open || at >= p.Close()-slack {
				t.Errorf("window %d: a send at %v, outside (%v, %v)", p.Index, at, p.Open, p.Close()-slack)
			}
		}
		// 3 a minute of a life of minutes: about 3 per emulated minute.
		life := s.emulated(p.Close() - p.Open - slack).Minutes()
		if n := float64(len(p.Sends)); n < 0.6*3*life-2 || n > 1.4*3*life+2 {
			t.Errorf("window %d (%s): %v sends over %.1f emulated minutes, want about 3 a minute", p.Index, p.Class, n, life)
		}
	}
	if byClass["visit"] != 16 || byClass["background"] != 16 || byClass["long"] != 8 {
		t.Errorf("classes %v, want 16 visits, 16 background, 8 long", byClass)
	}
}

func TestStreamEnv(t *testing.T) {
	s := Settings{Compression: 30, Poll: 100 * time.Millisecond}
	want := []string{
		"POLL_INTERVAL=100ms", "HEARTBEAT_INTERVAL=1s", "MAX_STREAM_DURATION=28s",
		"STREAM_DEADLINE_MARGIN=333.333333ms", "RETRY_MS=100", "MAX_STREAMS_PER_IP=100000",
	}
	if got := s.streamEnv(); !slices.Equal(got, want) {
		t.Errorf("streamEnv = %q, want %q", got, want)
	}
	if got := s.lambdaTimeout(); got != 30*time.Second {
		t.Errorf("lambdaTimeout = %v, want 30s", got)
	}
	if got := s.wall(hideGrace); got != 2*time.Second {
		t.Errorf("grace = %v, want 2s", got)
	}
}

func TestReplaceSection(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
		err             bool
	}{
		{"between the markers", "# Cost\nhand\n" + beginMarker + "\nold\n" + endMarker + "\nrest\n",
			"# Cost\nhand\n" + beginMarker + "\nnew\n" + endMarker + "\nrest\n", false},
		{"no markers: appended", "# Cost\nhand\n\n",
			"# Cost\nhand\n\n" + beginMarker + "\nnew\n" + endMarker + "\n", false},
		{"the end only", "# Cost\n" + endMarker + "\n", "", true},
		{"out of order", endMarker + "\n" + beginMarker + "\n", "", true},
	} {
		got, err := replaceSection([]byte(tc.doc), "new\n")
		if (err != nil) != tc.err {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.err)
			continue
		}
		if !tc.err && string(got) != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	before := &figures{Mode: modeBefore, BilledPerVisible: 4.384, Unserved: 0.758, RanOn: 0.346, HiddenConnected: 0.412,
		VisibleMinutes: 120, StreamInvocations: 40, DDB: map[string]float64{"Query": 84.16, "PutItem(lease)": 9.06},
		Sent: 2140, Dollars: dollars{LambdaDuration: 26.28, DynamoDBAt1s: 4.5}}
	info := runInfo{When: t0, Commit: "abc1234", Wall: 100 * time.Second, CPUs: 2, LoadAvg: "1.00",
		Settings: Settings{Windows: 40, Compression: 30, Poll: 100 * time.Millisecond, Rate: 3, Spread: 10 * time.Minute}}
	out := render(info, before, nil, map[string]float64{"GetItem": 1}, 1, 7)
	for _, want := range []string{
		"| **billed Lambda s per visible window-s** (the target after: at most 1.2) | **4.38** | not measured |",
		"| share of the billed time that served nobody | 75.8% | not measured |",
		"| stream invocations per visible window-hour | 20.0 | not measured |",
		"| **$ per 1000 visible window-hours** | **30.78** | not measured |",
		"| webhooks accepted / lost / duplicated | 2140 / 0 / 0 | not measured |",
		"| `Query` | 84.16 | not measured |",
		"POLL_INTERVAL 100ms wall, i.e. 3s emulated",
		"one Query per followed partition per second of stream time",
		"MAX_STREAM_DURATION 14m0s (run: 28s)",
		"16 visit (visible 2 min, then closed)",
		"7.0 WRU + 1.0 RRU",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "`Query`"), strings.Index(out, "`PutItem(lease)`"); i < 0 || j < i {
		t.Error("operations are not listed most requests first")
	}
}
