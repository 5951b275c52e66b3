package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

// hideGrace is how long the chat page lets a hidden window keep its stream
// before it closes it: the page's default (HIDE_GRACE_MS, which
// data-hide-grace-ms overrides).
const hideGrace = 60 * time.Second

// phase is a stretch of a window's life in which it is visible or hidden.
type phase struct {
	Visible bool
	For     time.Duration // emulated time
}

// class is a kind of window: its share of the mix and its phases, in
// emulated (real-life) time. A window is closed after its last phase.
type class struct {
	Name   string
	Share  float64
	Phases []phase
	About  string // for the report
}

// mix is the scripted traffic: mostly short visits and background tabs.
// A background tab comes back for a minute before it is closed, so that
// the catch-up after a pause is exercised (and checked) too.
var mix = []class{
	{"visit", 0.4, []phase{{true, 2 * time.Minute}}, "visible 2 min, then closed"},
	{"background", 0.4, []phase{{true, 3 * time.Minute}, {false, 30 * time.Minute}, {true, time.Minute}},
		"visible 3 min, hidden 30 min, visible 1 min, then closed"},
	{"long", 0.2, []phase{{true, 20 * time.Minute}}, "visible 20 min, then closed"},
}

// Settings are what a run is made of. Durations without "Wall" are
// emulated: the run divides them by Compression.
type Settings struct {
	Windows     int           `json:"windows"`
	Compression int           `json:"compression"`
	Poll        time.Duration `json:"pollWall"` // POLL_INTERVAL as the functions get it (wall time)
	Rate        float64       `json:"webhooksPerWindowMinute"`
	Spread      time.Duration `json:"spread"` // windows open at random times within this
	Seed        uint64        `json:"seed"`
}

// wall is d in the compressed time of the run.
func (s Settings) wall(d time.Duration) time.Duration { return d / time.Duration(s.Compression) }

// emulated is a wall-time duration of the run in real-life time.
func (s Settings) emulated(d time.Duration) time.Duration { return d * time.Duration(s.Compression) }

// streamEnv is the stream function's configuration: the production
// defaults of internal/config divided by the compression, except
// POLL_INTERVAL (chosen) and the per-IP cap, raised but kept on so that
// its lease items are written as with the default cap (every window of
// the run comes from 127.0.0.1).
func (s Settings) streamEnv() []string {
	d := config.Defaults()
	return []string{
		"POLL_INTERVAL=" + s.Poll.String(),
		"HEARTBEAT_INTERVAL=" + s.wall(d.HeartbeatInterval).String(),
		"MAX_STREAM_DURATION=" + s.wall(d.MaxStreamDuration).String(),
		"STREAM_DEADLINE_MARGIN=" + s.wall(d.StreamDeadlineMargin).String(),
		fmt.Sprintf("RETRY_MS=%d", s.retryWall().Milliseconds()),
		"MAX_STREAMS_PER_IP=100000",
	}
}

// retryWall is the reconnect delay the stream tells EventSource (RETRY_MS).
func (s Settings) retryWall() time.Duration {
	return s.wall(time.Duration(config.Defaults().RetryMS) * time.Millisecond)
}

// lambdaTimeout is the stream function's timeout: Lambda's maximum, which
// the template gives it, compressed.
func (s Settings) lambdaTimeout() time.Duration { return s.wall(lambdaemu.DefaultTimeout) }

// webhookSecret is the run's WEBHOOK_SECRET: senders authenticate as in
// production.
const webhookSecret = "costrun-webhook-secret"

// webhookEnv lifts the rate limits out of the way (every sender is
// 127.0.0.1) while the counters are still written, as in production.
func webhookEnv() []string {
	return []string{"WEBHOOK_SECRET=" + webhookSecret,
		"RATE_LIMIT_PER_MINUTE=100000000", "SESSION_RATE_LIMIT_PER_MINUTE=100000000"}
}

// plan is one window's script, in wall time from the start of the run.
type plan struct {
	Index   int
	Class   string
	Open    time.Duration
	Phases  []phase // wall durations
	Session string
	// Sends are the times of the window's webhooks, from the start of the
	// run. None falls within slack of the close: a message must have time
	// to reach an open window before it goes.
	Sends []time.Duration
}

// Close is when the window is closed.
func (p plan) Close() time.Duration {
	t := p.Open
	for _, ph := range p.Phases {
		t += ph.For
	}
	return t
}

// counts splits n windows over the classes by their shares, by largest
// remainder, so that the counts add up to n.
func counts(n int, classes []class) []int {
	out := make([]int, len(classes))
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	total := 0
	for i, c := range classes {
		exact := c.Share * float64(n)
		out[i] = int(exact)
		total += out[i]
		rems = append(rems, rem{i, exact - float64(out[i])})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for k := 0; total < n; k++ {
		out[rems[k%len(rems)].i]++
		total++
	}
	return out
}

// plans is the script of a run: the same for every mode with the same
// settings, so that before and after see the same windows and messages.
func (s Settings) plans(slack time.Duration) []plan {
	rng := rand.New(rand.NewPCG(s.Seed, 0x636f7374))
	var names []string
	for i, n := range counts(s.Windows, mix) {
		for range n {
			names = append(names, mix[i].Name)
		}
	}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	spread := s.wall(s.Spread)
	interval := s.wall(time.Duration(float64(time.Minute) / s.Rate))
	var out []plan
	for i, name := range names {
		c := classByName(name)
		p := plan{Index: i, Class: name, Open: time.Duration(rng.Int64N(int64(spread) + 1)),
			Session: fmt.Sprintf("cost-%d-%08x", i, rng.Uint32())}
		for _, ph := range c.Phases {
			p.Phases = append(p.Phases, phase{ph.Visible, s.wall(ph.For)})
		}
		last := p.Close() - slack
		for t := p.Open + jitter(rng, interval); t < last; t += jitter(rng, interval) {
			p.Sends = append(p.Sends, t)
		}
		out = append(out, p)
	}
	return out
}

// jitter is d times a uniform factor in [0.5, 1.5).
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rng.Float64()))
}

func classByName(name string) class {
	for _, c := range mix {
		if c.Name == name {
			return c
		}
	}
	panic("costrun: no class " + name)
}
