package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The memory run (-mem-messages N): does the relay give memory back once what
// it held has expired? It reads the server's RSS, sends N messages each to a
// session of its own, opens -mem-opens streams on random sessions nobody
// sends to (each open waits for its connected event and closes), waits until
// -mem-ttl has passed since the last message, sends one more message (the
// memory store sweeps lazily, on an append, a stream open or a counter
// increment, at most every min(1m, TTL/2)), and reads RSS at the offsets of
// -mem-samples after that answer. Go returns freed heap to the OS lazily:
// the heap is collected at the next GC (with no allocation, the forced GC
// every two minutes) and released by the background scavenger after that,
// so the later samples matter.

type memConfig struct {
	Target      string
	ServerPID   int
	Messages    int
	Opens       int
	Concurrency int
	TTL         time.Duration
	Samples     []time.Duration
	Label       string
	Log         io.Writer
}

type rssSample struct {
	Phase   string  `json:"phase"`
	T       float64 `json:"t_s"` // from the start of the run
	RSSMB   float64 `json:"rss_mb"`
	Threads int     `json:"threads"`
}

type memR struct {
	Label          string         `json:"label"`
	Target         string         `json:"target"`
	Run            string         `json:"run"`
	Started        time.Time      `json:"started"`
	Messages       int            `json:"messages"`
	Opens          int            `json:"opens"`
	TTLS           float64        `json:"ttl_s"`
	RSSBeforeMB    float64        `json:"rss_before_mb"`
	RSSAfterLoadMB float64        `json:"rss_after_load_mb"`
	Published      int64          `json:"published_ok"`
	PublishFailed  int64          `json:"publish_failed"`
	Failures       map[string]int `json:"publish_failures,omitempty"`
	PublishS       float64        `json:"publish_s"`
	OpensOK        int64          `json:"opens_ok"`
	OpensFailed    int64          `json:"opens_failed"`
	OpenErrors     []string       `json:"open_errors,omitempty"`
	OpensS         float64        `json:"opens_s"`
	TriggerStatus  int            `json:"trigger_status"`
	TriggerAfterS  float64        `json:"trigger_after_last_message_s"`
	TriggerAtS     float64        `json:"trigger_at_s"` // from the start of the run
	Samples        []rssSample    `json:"samples"`
	WallS          float64        `json:"wall_s"`
	OK             bool           `json:"ok"`
	Problems       []string       `json:"problems,omitempty"`
}

func runMem(ctx context.Context, mc memConfig) (*memR, error) {
	if mc.Log == nil {
		mc.Log = io.Discard
	}
	if mc.Concurrency <= 0 {
		mc.Concurrency = 16
	}
	u, err := url.Parse(mc.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want http://127.0.0.1:PORT", mc.Target)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, err
	}
	if mc.ServerPID <= 0 || !readProc(mc.ServerPID).OK {
		return nil, errors.New("-mem-messages needs the -server-pid of a running server")
	}
	if _, err := raiseFileLimit(mc.Concurrency*3 + 64); err != nil {
		return nil, err
	}
	var runID [4]byte
	_, _ = rand.Read(runID[:])
	cfg := config{Target: mc.Target, Sessions: mc.Messages, Concurrency: mc.Concurrency,
		ConnectTimeout: 15 * time.Second, Log: mc.Log}
	g := &gen{
		cfg: cfg, run: hex.EncodeToString(runID[:]),
		base: strings.TrimSuffix(mc.Target, "/"), hostport: u.Host, basePath: strings.TrimSuffix(u.Path, "/"), wire: relayWire{},
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: mc.Concurrency, MaxConnsPerHost: mc.Concurrency,
			DisableCompression: true, IdleConnTimeout: 30 * time.Second,
		}},
	}
	defer g.client.CloseIdleConnections()
	start := time.Now()
	r := &memR{Label: mc.Label, Target: mc.Target, Run: g.run, Started: start.UTC().Truncate(time.Second),
		Messages: mc.Messages, Opens: mc.Opens, TTLS: mc.TTL.Seconds()}
	defer func() { r.WallS = round3(time.Since(start).Seconds()) }()
	problem := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	if _, err := g.health(ctx); err != nil {
		return nil, fmt.Errorf("server at %s is not healthy: %w", mc.Target, err)
	}
	sample := func(phase string) {
		p := readProc(mc.ServerPID)
		r.Samples = append(r.Samples, rssSample{Phase: phase, T: round3(time.Since(start).Seconds()), RSSMB: mb(p.RSSBytes), Threads: p.Threads})
		fmt.Fprintf(mc.Log, "mem: %s: server RSS %.1f MB, %d threads\n", phase, mb(p.RSSBytes), p.Threads)
	}
	r.RSSBeforeMB = mb(readProc(mc.ServerPID).RSSBytes)
	sample("before")

	// N messages, message i to session i: as fast as the workers go.
	jobs := make(chan struct{}, mc.Messages)
	for range mc.Messages {
		jobs <- struct{}{}
	}
	close(jobs)
	workers := make([]*worker, mc.Concurrency)
	var wg sync.WaitGroup
	pubStart := time.Now()
	for i := range workers {
		w := &worker{lat: newHist(), fails: map[string]int{}}
		workers[i] = w
		wg.Go(func() {
			for range jobs {
				if ctx.Err() != nil {
					return
				}
				g.publish(ctx, w)
			}
		})
	}
	wg.Wait()
	lastMessage := time.Now()
	r.PublishS = round3(lastMessage.Sub(pubStart).Seconds())
	r.Published, r.PublishFailed = g.published.Load(), g.failed.Load()
	r.Failures = map[string]int{}
	for _, w := range workers {
		for k, v := range w.fails {
			r.Failures[k] += v
		}
	}
	if len(r.Failures) == 0 {
		r.Failures = nil
	}
	fmt.Fprintf(mc.Log, "mem: %d messages to %d sessions in %.1fs (%d failed)\n", r.Published, mc.Messages, r.PublishS, r.PublishFailed)
	sample("after the messages")

	// Streams on random sessions: open, wait for the connected event, close.
	openJobs := make(chan struct{}, mc.Opens)
	for range mc.Opens {
		openJobs <- struct{}{}
	}
	close(openJobs)
	var okOpens, failedOpens atomic.Int64
	var errMu sync.Mutex
	opensStart := time.Now()
	for range min(mc.Concurrency*2, 64) {
		wg.Go(func() {
			for range openJobs {
				if ctx.Err() != nil {
					return
				}
				if err := g.openOnce(ctx); err != nil {
					failedOpens.Add(1)
					errMu.Lock()
					if len(r.OpenErrors) < 5 {
						r.OpenErrors = append(r.OpenErrors, err.Error())
					}
					errMu.Unlock()
				} else {
					okOpens.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r.OpensS = round3(time.Since(opensStart).Seconds())
	r.OpensOK, r.OpensFailed = okOpens.Load(), failedOpens.Load()
	fmt.Fprintf(mc.Log, "mem: %d stream opens on random sessions in %.1fs (%d failed)\n", r.OpensOK, r.OpensS, r.OpensFailed)
	r.RSSAfterLoadMB = mb(readProc(mc.ServerPID).RSSBytes)
	sample("after the stream opens")

	// Wait out the TTL, sampling on the way.
	due := lastMessage.Add(mc.TTL + 5*time.Second)
	for time.Until(due) > 0 {
		if !sleepCtx(ctx, min(15*time.Second, time.Until(due))) {
			return nil, ctx.Err()
		}
		sample(fmt.Sprintf("%.0fs after the last message, no sweep yet", time.Since(lastMessage).Seconds()))
	}

	// One append runs the sweep.
	g.cfg.Sessions = 0 // the trigger is a broadcast: one more message in one partition
	status, err := g.trigger(ctx)
	if err != nil {
		problem("trigger request: %v", err)
	}
	r.TriggerStatus = status
	trig := time.Now()
	r.TriggerAfterS = round3(trig.Sub(lastMessage).Seconds())
	r.TriggerAtS = round3(trig.Sub(start).Seconds())
	for _, off := range mc.Samples {
		if d := time.Until(trig.Add(off)); d > 0 && !sleepCtx(ctx, d) {
			return nil, ctx.Err()
		}
		sample(fmt.Sprintf("sweep +%.0fs", off.Seconds()))
	}
	if r.PublishFailed > 0 || r.Published != int64(mc.Messages) {
		problem("%d of %d messages accepted: %v", r.Published, mc.Messages, r.Failures)
	}
	if r.OpensFailed > 0 {
		problem("%d of %d stream opens failed: %v", r.OpensFailed, mc.Opens, r.OpenErrors)
	}
	if status != http.StatusOK {
		problem("trigger answered %d", status)
	}
	r.OK = len(r.Problems) == 0
	return r, nil
}

// openOnce opens a stream on a fresh random session, waits for its
// connected event and closes it.
func (g *gen) openOnce(ctx context.Context) error {
	var id [6]byte
	_, _ = rand.Read(id[:])
	s := &subscriber{g: g, session: -1, sessionID: "lg-" + g.run + "-o" + hex.EncodeToString(id[:]), retryMS: 3000}
	conn, body, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(g.cfg.ConnectTimeout))
	connected := false
	err = s.read(body, func() {
		connected = true
		_ = conn.Close()
	})
	if !connected {
		return fmt.Errorf("no connected event: %v", err)
	}
	return nil
}

// trigger POSTs one broadcast message and returns the status.
func (g *gen) trigger(ctx context.Context) (int, error) {
	body := `{"message":"lg:` + g.run + `:trigger"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/api/webhook", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
