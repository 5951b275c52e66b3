package main

import (
	"slices"
	"strings"
	"time"

	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

// List prices, as in the unit price table of docs/cost.md (us-east-1, no
// free tier), and the stream function's memory as the template sets it.
const (
	lambdaPerGBSecond = 0.0000133334
	lambdaPerRequest  = 0.20 / 1e6
	streamMemoryGB    = 0.125 // 128 MB
	dynamoPerWRU      = 0.625 / 1e6
	dynamoPerRRU      = 0.125 / 1e6
)

// opTotals is one operation's totals as the counting proxy of
// tools/loadgen reports them (GET /__loadgen/counts).
type opTotals struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ReqBytes  int64   `json:"req_bytes"`
	RespBytes int64   `json:"resp_bytes"`
	RRU       float64 `json:"rru"`
	WRU       float64 `json:"wru"`
}

// diffOps is b - a, by operation, leaving out the operations that did not move.
func diffOps(a, b map[string]opTotals) map[string]opTotals {
	out := map[string]opTotals{}
	for op, v := range b {
		p := a[op]
		d := opTotals{v.Requests - p.Requests, v.Errors - p.Errors, v.ReqBytes - p.ReqBytes,
			v.RespBytes - p.RespBytes, v.RRU - p.RRU, v.WRU - p.WRU}
		if d != (opTotals{}) {
			out[op] = d
		}
	}
	return out
}

// modeResult is everything one mode's run recorded: the input of figures.
type modeResult struct {
	Mode     string         `json:"mode"`
	Settings Settings       `json:"settings"`
	Commit   string         `json:"commit,omitempty"`
	Started  time.Time      `json:"started"`
	Wall     time.Duration  `json:"wall"`
	LoadAvg  string         `json:"loadAvg"` // the machine's 1-minute load average as the mode ended
	Windows  []windowResult `json:"windows"`
	// The stream function's invocations: streams, and (after) the close
	// beacons, which run as invocations of the same function; kept apart
	// by a second emulator of the same binary.
	Streams    []lambdaemu.Invocation `json:"streams"`
	Closes     []lambdaemu.Invocation `json:"closes"`
	Webhooks   int                    `json:"webhookInvocations"`
	StreamDDB  map[string]opTotals    `json:"streamDynamoDB"` // the stream function's requests (both emulators)
	WebhookDDB map[string]opTotals    `json:"webhookDynamoDB"`
}

// figures are what the report says of one mode.
type figures struct {
	Mode    string
	Windows map[string]int // by class

	VisibleMinutes    float64 // emulated window-minutes visible
	StreamInvocations int
	CloseInvocations  int
	ColdStarts        int

	BilledPerVisible float64 // billed Lambda seconds per visible window-second
	Unserved         float64 // share of billed time that served nobody
	RanOn            float64 // ... of it: invocations running on after their window left
	HiddenConnected  float64 // ... of it: connected while hidden past the grace

	// DynamoDB requests of the stream function per visible window-minute,
	// by operation, and the capacity units.
	DDB      map[string]float64
	RRU, WRU float64
	// RRUAt1s is RRU with the polling reads at POLL_INTERVAL 1s: one Query
	// per followed partition per second of stream time, at the RRU per
	// Query measured, in place of the Queries counted.
	RRUAt1s float64
	// Polled is the Queries counted over the nominal number (one per
	// partition per POLL_INTERVAL of stream time): below 1 when DynamoDB
	// Local lagged, a little above from the Queries of the opens.
	Polled float64

	Sent, Lost, Duplicated, Unexpected, Misrouted, Resets, SendFailed int
	Beacons, BeaconsNot204, ClosesWithoutID                           int
	StreamErrors                                                      int // stream requests that failed (not a planned end, not dropped)

	Dollars dollars // per 1000 visible window-hours
}

// dollars are list prices per 1000 visible window-hours.
type dollars struct {
	LambdaDuration, LambdaRequests float64
	DynamoDB, DynamoDBAt1s         float64
}

func (d dollars) Total() float64     { return d.LambdaDuration + d.LambdaRequests + d.DynamoDB }
func (d dollars) TotalAt1s() float64 { return d.LambdaDuration + d.LambdaRequests + d.DynamoDBAt1s }

// overlap is how long a and b share.
func overlap(a, b span) time.Duration {
	from, to := a.From, a.To
	if b.From.After(from) {
		from = b.From
	}
	if b.To.Before(to) {
		to = b.To
	}
	if to.After(from) {
		return to.Sub(from)
	}
	return 0
}

// delivery checks a window's messages: every webhook accepted for its
// session delivered exactly once, nothing else.
func delivery(w windowResult) (lost, duplicated, unexpected int) {
	sent := make(map[string]bool, len(w.Sent))
	for _, id := range w.Sent {
		sent[id] = true
		if w.Received[id] == 0 {
			lost++
		}
	}
	for id, n := range w.Received {
		if n > 1 {
			duplicated += n - 1
		}
		if !sent[id] {
			unexpected++
		}
	}
	return lost, duplicated, unexpected
}

// ranOn is how long invocations ran after their client had left: on AWS,
// billed time that no one could receive.
func ranOn(recs []lambdaemu.Invocation) time.Duration {
	var d time.Duration
	for _, r := range recs {
		if r.ClientGone && r.End.After(r.ClientGoneAt) {
			d += r.End.Sub(r.ClientGoneAt)
		}
	}
	return d
}

func billed(recs []lambdaemu.Invocation) time.Duration {
	var d time.Duration
	for _, r := range recs {
		d += r.Billed
	}
	return d
}

// pollOp is the operation whose count follows POLL_INTERVAL: the Query of
// a message partition (the proxy marks lease and rate-limit items with a
// suffix). Opening a stream makes a few of them too.
const pollOp = "Query"

// partitionsPerStream is what every window of the run follows: its
// session's partition and broadcast, one Query each per poll.
const partitionsPerStream = 2

// compute turns a mode's records into its figures.
func compute(r modeResult) figures {
	s := r.Settings
	f := figures{Mode: r.Mode, Windows: map[string]int{}, DDB: map[string]float64{}}
	var visible, hiddenConnected time.Duration
	for _, w := range r.Windows {
		f.Windows[w.Class]++
		for _, v := range w.Visible {
			visible += v.To.Sub(v.From)
		}
		for _, c := range w.Conns {
			if c.Ended == "error" {
				f.StreamErrors++
			}
			for _, h := range w.HiddenPastGrace {
				hiddenConnected += overlap(span{c.Start, c.End}, h)
			}
		}
		lost, dup, unexpected := delivery(w)
		f.Sent += len(w.Sent)
		f.Lost += lost
		f.Duplicated += dup
		f.Unexpected += unexpected
		f.Misrouted += w.Misrouted
		f.Resets += w.Resets
		f.SendFailed += w.SendFailed
		f.ClosesWithoutID += w.ClosesWithoutID
		for _, b := range w.Closes {
			f.Beacons++
			if b.Status != 204 {
				f.BeaconsNot204++
			}
		}
	}
	f.StreamInvocations, f.CloseInvocations = len(r.Streams), len(r.Closes)
	for _, rec := range slices.Concat(r.Streams, r.Closes) {
		if rec.Init > 0 {
			f.ColdStarts++
		}
	}
	total := billed(r.Streams) + billed(r.Closes)
	if visible > 0 {
		f.BilledPerVisible = total.Seconds() / visible.Seconds()
	}
	if total > 0 {
		on := ranOn(r.Streams)
		f.RanOn = on.Seconds() / total.Seconds()
		f.HiddenConnected = hiddenConnected.Seconds() / total.Seconds()
		f.Unserved = f.RanOn + f.HiddenConnected
	}

	// Per visible window-minute of emulated time: what a real window of the
	// mix would make in a minute it is looked at.
	visibleEmu := s.emulated(visible)
	f.VisibleMinutes = visibleEmu.Minutes()
	var streamTime time.Duration
	for _, rec := range r.Streams {
		streamTime += rec.Duration
	}
	polls := r.StreamDDB[pollOp]
	if nominal := streamTime.Seconds() * partitionsPerStream / s.Poll.Seconds(); nominal > 0 {
		f.Polled = float64(polls.Requests) / nominal
	}
	if f.VisibleMinutes > 0 {
		for op, v := range r.StreamDDB {
			f.DDB[op] = float64(v.Requests) / f.VisibleMinutes
			f.RRU += v.RRU / f.VisibleMinutes
			f.WRU += v.WRU / f.VisibleMinutes
		}
		f.RRUAt1s = f.RRU - polls.RRU/f.VisibleMinutes
		if polls.Requests > 0 {
			perQuery := polls.RRU / float64(polls.Requests)
			f.RRUAt1s += s.emulated(streamTime).Seconds() * partitionsPerStream * perQuery / f.VisibleMinutes
		}
		hours := visibleEmu.Hours()
		f.Dollars = dollars{
			LambdaDuration: f.BilledPerVisible * 3600 * 1000 * streamMemoryGB * lambdaPerGBSecond,
			LambdaRequests: float64(f.StreamInvocations+f.CloseInvocations) / hours * 1000 * lambdaPerRequest,
			DynamoDB:       (f.RRU*dynamoPerRRU + f.WRU*dynamoPerWRU) * 60 * 1000,
			DynamoDBAt1s:   (f.RRUAt1s*dynamoPerRRU + f.WRU*dynamoPerWRU) * 60 * 1000,
		}
	}
	return f
}

// ingest is the webhook function's DynamoDB requests per accepted webhook:
// the same in both modes (docs/cost.md prices it per million webhooks).
func ingest(r modeResult) (perWebhook map[string]float64, rru, wru float64) {
	sent := 0
	for _, w := range r.Windows {
		sent += len(w.Sent)
	}
	perWebhook = map[string]float64{}
	if sent == 0 {
		return perWebhook, 0, 0
	}
	for op, v := range r.WebhookDDB {
		perWebhook[op] = float64(v.Requests) / float64(sent)
		rru += v.RRU / float64(sent)
		wru += v.WRU / float64(sent)
	}
	return perWebhook, rru, wru
}

// opsByCount lists operations most requests first, then by name.
func opsByCount(ms ...map[string]float64) []string {
	seen := map[string]float64{}
	for _, m := range ms {
		for op, v := range m {
			seen[op] = max(seen[op], v)
		}
	}
	ops := make([]string, 0, len(seen))
	for op := range seen {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int {
		switch {
		case seen[a] > seen[b]:
			return -1
		case seen[a] < seen[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	return ops
}
