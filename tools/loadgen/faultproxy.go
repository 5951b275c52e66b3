package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
)

// The fault proxy (-fault-proxy UPSTREAM) is ddbfault's reverse proxy in
// front of DynamoDB Local, with a control endpoint to switch its rule set
// while a run goes on:
//
//	POST /__ddbfault/rules {"weather":true}                  weatherRules(3s)
//	POST /__ddbfault/rules {"weather":true,"held_for":"5s"}  weatherRules(5s)
//	POST /__ddbfault/rules {"outage":true}                   every request refused
//	POST /__ddbfault/rules {}                                no faults
//	GET  /__ddbfault/counts                                  mode, switches, faults by operation
//
// Everything else is DynamoDB traffic and goes through the Injector.

const (
	faultRulesPath  = "/__ddbfault/rules"
	faultCountsPath = "/__ddbfault/counts"
	defaultHeldFor  = 3 * time.Second
)

// weatherRules is ddbfault.Weather(heldFor) with one rule more in front:
// Weather holds 1% of the message PutItems (kind m) for heldFor, but the relay
// writes a message with an Idempotency-Key (every message of a -sender run)
// in a TransactWriteItems with its idempotency record, which that rule never
// matches. The extra rule holds 1% of those the same way.
func weatherRules(heldFor time.Duration) []ddbfault.Rule {
	held := ddbfault.Rule{Ops: []string{"TransactWriteItems"}, Contains: `"kind":{"S":"m"}`,
		Kind: ddbfault.Pass, Delay: heldFor, Fraction: 0.01}
	return append([]ddbfault.Rule{held}, ddbfault.Weather(heldFor)...)
}

// faultRules is the control request.
type faultRules struct {
	Weather bool   `json:"weather,omitempty"`
	Outage  bool   `json:"outage,omitempty"`
	HeldFor string `json:"held_for,omitempty"` // with weather: how long held writers wait
}

// mode names a rule set: "clear", "weather" or "outage".
func (r faultRules) mode() string {
	switch {
	case r.Outage:
		return "outage"
	case r.Weather:
		return "weather"
	}
	return "clear"
}

// faultSwitch is one change of rule set.
type faultSwitch struct {
	Mode string    `json:"mode"`
	At   time.Time `json:"at"`
}

// faultCounts is GET /__ddbfault/counts.
type faultCounts struct {
	Mode     string                      `json:"mode"`
	Switches []faultSwitch               `json:"switches"`
	Ops      map[string]ddbfault.OpCount `json:"ops"`
}

type faultProxy struct {
	inj     *ddbfault.Injector
	forward http.Handler
	mu      sync.Mutex
	mode    string
	history []faultSwitch
}

func newFaultProxy(upstream *url.URL, seed uint64) *faultProxy {
	inj := ddbfault.New(seed)
	return &faultProxy{inj: inj, forward: inj.Handler(upstream), mode: "clear",
		history: []faultSwitch{{Mode: "clear", At: time.Now()}}}
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case faultRulesPath:
		if r.Method != http.MethodPost {
			http.Error(w, "POST a rule set", http.StatusMethodNotAllowed)
			return
		}
		var fr faultRules
		b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			err = dec.Decode(&fr)
		}
		if err == nil && fr.Weather && fr.Outage {
			err = errors.New("weather and outage are exclusive")
		}
		held := defaultHeldFor
		if err == nil && fr.HeldFor != "" {
			held, err = time.ParseDuration(fr.HeldFor)
		}
		if err != nil {
			http.Error(w, "bad rule set: "+err.Error(), http.StatusBadRequest)
			return
		}
		var rules []ddbfault.Rule
		switch fr.mode() {
		case "weather":
			rules = weatherRules(held)
		case "outage":
			rules = []ddbfault.Rule{{Kind: ddbfault.Outage}}
		}
		p.mu.Lock()
		p.inj.Set(rules...)
		p.mode = fr.mode()
		p.history = append(p.history, faultSwitch{Mode: p.mode, At: time.Now()})
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, `{"mode":"`+fr.mode()+`"}`)
	case faultCountsPath:
		p.mu.Lock()
		c := faultCounts{Mode: p.mode, Switches: append([]faultSwitch(nil), p.history...), Ops: p.inj.Counts()}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	default:
		p.forward.ServeHTTP(w, r)
	}
}

// serveFaultProxy runs the fault proxy on addr in front of upstream until
// ctx ends, printing its URL on out.
func serveFaultProxy(ctx context.Context, addr, upstream string, seed uint64, out io.Writer) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return fmt.Errorf("-fault-proxy %q: want http://127.0.0.1:PORT", upstream)
	}
	if err := checkLoopback(u.Host); err != nil {
		return err
	}
	if err := checkLoopback(addr); err != nil {
		return err
	}
	srv := &http.Server{Handler: newFaultProxy(u, seed), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	return serveBounded(ctx, "fault-proxy", addr, srv, 0, out,
		fmt.Sprintf(" (control: POST %s, GET %s)", faultRulesPath, faultCountsPath))
}

// phaseSpec is one step of -fault-schedule: switch to Mode At after the
// start of publishing.
type phaseSpec struct {
	Mode string
	At   time.Duration
}

// parseSchedule reads "weather@0s,outage@35s,weather@45s,clear@75s".
func parseSchedule(s string) ([]phaseSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []phaseSpec
	for _, part := range strings.Split(s, ",") {
		mode, at, ok := strings.Cut(strings.TrimSpace(part), "@")
		d, err := time.ParseDuration(at)
		switch {
		case !ok || err != nil || d < 0:
			return nil, fmt.Errorf("-fault-schedule: %q: want MODE@DURATION, e.g. outage@35s", part)
		case mode != "clear" && mode != "weather" && mode != "outage":
			return nil, fmt.Errorf("-fault-schedule: %q: mode must be clear, weather or outage", part)
		case len(out) > 0 && d <= out[len(out)-1].At:
			return nil, fmt.Errorf("-fault-schedule: %q: times must increase", part)
		}
		out = append(out, phaseSpec{Mode: mode, At: d})
	}
	if out[0].At > 0 { // phases cover all of publishing
		out = append([]phaseSpec{{Mode: "clear"}}, out...)
	}
	return out, nil
}

// faultControl drives a fault proxy's control endpoint.
type faultControl struct {
	base    string // http://127.0.0.1:P
	heldFor time.Duration
	client  *http.Client
}

func (fc *faultControl) set(ctx context.Context, mode string) error {
	body := "{}"
	switch mode {
	case "weather":
		body = fmt.Sprintf(`{"weather":true,"held_for":%q}`, fc.heldFor.String())
	case "outage":
		body = `{"outage":true}`
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fc.base+faultRulesPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := fc.client.Do(req)
	if err != nil {
		return fmt.Errorf("fault control %s: %w", mode, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fault control %s: %d %s", mode, resp.StatusCode, b)
	}
	return nil
}

func (fc *faultControl) counts(ctx context.Context) (*faultCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fc.base+faultCountsPath, nil)
	resp, err := fc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fault counts: %w", err)
	}
	defer resp.Body.Close()
	var c faultCounts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("fault counts: %w", err)
	}
	return &c, nil
}

// faultR is what a run with -fault-control adds to its result.
type faultR struct {
	Proxy    string                      `json:"proxy"`
	HeldForS float64                     `json:"held_for_s"`
	Switches []faultSwitch               `json:"switches"`
	Ops      map[string]ddbfault.OpCount `json:"ops"`
	Total    ddbfault.OpCount            `json:"total"`
	Errors   []string                    `json:"errors,omitempty"`
}

// runSchedule switches the proxy's rules at each step's time after start;
// it returns when the schedule is done or ctx ends, with the errors met.
func (fc *faultControl) runSchedule(ctx context.Context, start time.Time, steps []phaseSpec, log io.Writer) []string {
	var errs []string
	for _, st := range steps {
		if d := time.Until(start.Add(st.At)); d > 0 && !sleepCtx(ctx, d) {
			return errs
		}
		if err := fc.set(ctx, st.Mode); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		fmt.Fprintf(log, "fault proxy: %s at t=%.1fs\n", st.Mode, time.Since(start).Seconds())
	}
	return errs
}
