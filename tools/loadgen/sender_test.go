package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSendStateFollowsTheAnswers(t *testing.T) {
	var s sendState
	// 503 on a fresh key: nothing stored, so a new key.
	if done, _, wait := s.step(ans503, 2*time.Second); done || wait != 2*time.Second || s.gen != 1 || s.clean503 != 0b1 {
		t.Fatalf("after 503: done=%v wait=%v state %+v", done, wait, s)
	}
	// 429: same key, the wait it says.
	if done, _, wait := s.step(ans429, 5*time.Second); done || wait != 5*time.Second || s.gen != 1 {
		t.Fatalf("after 429: done=%v wait=%v state %+v", done, wait, s)
	}
	// 504: same key, and it stays.
	if done, _, wait := s.step(ans504, 0); done || wait != time.Second || s.gen != 1 || !s.ambiguous {
		t.Fatalf("after 504: done=%v wait=%v state %+v", done, wait, s)
	}
	// A 503 on a key with an open outcome keeps the key, and does not
	// count as a clean 503.
	if _, _, _ = s.step(ans503, 0); s.gen != 1 || s.clean503 != 0b1 {
		t.Fatalf("503 after 504 changed the key: %+v", s)
	}
	if done, ok, _ := s.step(ans200, 0); !done || !ok || s.attempts != 5 || !s.got503 || !s.unknown {
		t.Fatalf("after 200: done=%v ok=%v state %+v", done, ok, s)
	}

	for _, c := range []answerClass{ans500, ansNoAnswer} {
		var s sendState
		if done, _, _ := s.step(c, 0); done || !s.ambiguous || s.gen != 0 {
			t.Errorf("%s: done=%v state %+v; want a retry with the same key", c, done, s)
		}
	}
	var bad sendState
	if done, ok, _ := bad.step(ansOther, 0); !done || ok {
		t.Errorf("a 400 should end the message unaccepted: done=%v ok=%v", done, ok)
	}
	// Generations stop at maxGen.
	var many sendState
	for range maxGen + 5 {
		many.step(ans503, 0)
	}
	if many.gen != maxGen || many.clean503 != 1<<maxGen-1 {
		t.Errorf("after many 503s: gen %d clean %b", many.gen, many.clean503)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		status  int
		success bool
		want    answerClass
	}{
		{200, true, ans200}, {200, false, ansOther}, {503, false, ans503}, {504, false, ans504},
		{429, false, ans429}, {500, false, ans500}, {400, false, ansOther}, {502, false, ansOther},
	} {
		if got := classify(c.status, c.success); got != c.want {
			t.Errorf("classify(%d, %v) = %s, want %s", c.status, c.success, got, c.want)
		}
	}
	if parseRetryAfter("3") != 3*time.Second || parseRetryAfter("") != 0 || parseRetryAfter("999") != 30*time.Second {
		t.Error("Retry-After parsing")
	}
}

func TestMarkerWithGeneration(t *testing.T) {
	g := &gen{run: "abcd1234"}
	b := g.senderBody(nil, 7, 3, 99, 5)
	var in struct{ Message, SessionID string }
	if err := json.Unmarshal(b, &in); err != nil || in.SessionID != "lg-abcd1234-3" {
		t.Fatalf("body %s: %v", b, err)
	}
	m, ok := g.parseMarker([]byte(in.Message))
	if !ok || m.n != 7 || m.target != 3 || m.sent != 99 || m.gen != 5 {
		t.Fatalf("%q parsed as %+v, %v", in.Message, m, ok)
	}
	for _, bad := range []string{"lg:abcd1234:7:3:99:5", "lg:abcd1234:7:3:99:k", "lg:abcd1234:7:3:99:k64"} {
		if _, ok := g.parseMarker([]byte(bad)); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	var s genSet
	s.add(7, 0)
	s.add(7, 5)
	s.add(1<<20+3, 2)
	if s.get(7) != 0b100001 || s.get(1<<20+3) != 0b100 || s.get(8) != 0 || s.get(-1) != 0 {
		t.Errorf("genSet: %b %b %b", s.get(7), s.get(1<<20+3), s.get(8))
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := parseSchedule("weather@10s, outage@40s,clear@50s")
	if err != nil || len(s) != 4 || s[0] != (phaseSpec{"clear", 0}) || s[2] != (phaseSpec{"outage", 40 * time.Second}) {
		t.Fatalf("%+v, %v", s, err)
	}
	for _, bad := range []string{"rain@1s", "weather", "weather@1s,outage@1s", "weather@-1s"} {
		if _, err := parseSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// faultyFront sits before a floor server and answers its POSTs the way a
// relay with (or without) bugs would; it honours Idempotency-Key unless
// noIdem is set.
type faultyFront struct {
	floor http.Handler
	// answer decides the attempt-th POST's fate: store it (pass it to the
	// floor) and answer status.
	answer func(attempt int) (store bool, status int)
	noIdem bool

	mu       sync.Mutex
	attempts int
	keys     map[string]string // key -> floor answer
}

func (f *faultyFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		f.floor.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.attempts++
	n := f.attempts
	prev, seen := f.keys[key]
	f.mu.Unlock()
	if seen && !f.noIdem {
		writeJSON(w, http.StatusOK, prev)
		return
	}
	store, status := f.answer(n)
	if store {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, r.URL.String(), bytes.NewReader(body))
		f.floor.ServeHTTP(rec, req)
		f.mu.Lock()
		f.keys[key] = rec.Body.String()
		f.mu.Unlock()
		if status == http.StatusOK {
			writeJSON(w, http.StatusOK, rec.Body.String())
			return
		}
	}
	w.Header().Set("Retry-After", "0")
	writeJSON(w, status, `{"success":false,"error":"injected"}`)
}

func senderLoad(t *testing.T, front *faultyFront) *result {
	t.Helper()
	front.floor = newFloorServer()
	front.keys = map[string]string{}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	cfg := smallLoad(srv.URL)
	cfg.Sender, cfg.Rate, cfg.Duration, cfg.Drain, cfg.RetryFor = true, 200, time.Second, 2*time.Second, 20*time.Second
	res, err := runLoad(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A relay that answers 503 without storing and 504 after storing, and
// honours keys, passes; its answers are counted.
func TestSenderTruthfulFaults(t *testing.T) {
	res := senderLoad(t, &faultyFront{answer: func(n int) (bool, int) {
		switch {
		case n%5 == 0:
			return false, http.StatusServiceUnavailable
		case n%7 == 0:
			return true, http.StatusGatewayTimeout
		case n%11 == 0:
			return false, http.StatusTooManyRequests
		}
		return true, http.StatusOK
	}})
	s, d := res.Sender, res.Delivery
	if !res.OK || s == nil || d.Lost != 0 || d.Duplicated != 0 || d.Lied503 != 0 {
		t.Fatalf("want a clean run: problems %v, delivery %+v, sender %+v", res.Problems, d, s)
	}
	if s.Answers["503"] == 0 || s.Answers["504"] == 0 || s.Answers["429"] == 0 || s.Answers["200"] != s.Accepted || s.Retried == 0 {
		t.Errorf("answers %v, accepted %d, retried %d", s.Answers, s.Accepted, s.Retried)
	}
	if d.Expected == 0 || d.Delivered != d.Expected {
		t.Errorf("delivered %d of %d", d.Delivered, d.Expected)
	}
}

// A 503 after storing is caught as 503-but-delivered, not as a duplicate.
func TestSenderCatchesLying503(t *testing.T) {
	res := senderLoad(t, &faultyFront{answer: func(n int) (bool, int) {
		if n%5 == 0 {
			return true, http.StatusServiceUnavailable
		}
		return true, http.StatusOK
	}})
	d := res.Delivery
	if res.OK || d.Lied503 == 0 || res.Sender.Lied503Dups == 0 || d.Duplicated != 0 {
		t.Fatalf("lying 503 not reported: ok=%v problems=%v delivery=%+v sender=%+v", res.OK, res.Problems, d, res.Sender)
	}
}

// A 504 retried with the same key, stored twice by a relay that ignores the
// key, is a duplicate.
func TestSenderCatchesDuplicateAfter504(t *testing.T) {
	res := senderLoad(t, &faultyFront{noIdem: true, answer: func(n int) (bool, int) {
		if n%5 == 0 {
			return true, http.StatusGatewayTimeout
		}
		return true, http.StatusOK
	}})
	d := res.Delivery
	if res.OK || d.Duplicated == 0 || d.Lied503 != 0 {
		t.Fatalf("duplicate not reported: ok=%v problems=%v delivery=%+v", res.OK, res.Problems, d)
	}
}

func TestSender500IsAProblem(t *testing.T) {
	res := senderLoad(t, &faultyFront{answer: func(n int) (bool, int) {
		if n%9 == 0 {
			return false, http.StatusInternalServerError
		}
		return true, http.StatusOK
	}})
	if res.OK || res.Sender.Answers["500"] == 0 || !strings.Contains(strings.Join(res.Problems, ";"), "500") {
		t.Fatalf("500s not reported: ok=%v problems=%v answers=%v", res.OK, res.Problems, res.Sender.Answers)
	}
	if res.Delivery.Lost != 0 || res.Delivery.Duplicated != 0 {
		t.Errorf("delivery %+v", res.Delivery)
	}
}

// The fault proxy forwards DynamoDB traffic, and its control endpoint
// switches the rules: an outage drops every request.
func TestFaultProxyControl(t *testing.T) {
	var hits sync.Map
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.Header.Get("X-Amz-Target"), true)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("{}"))
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	proxy := httptest.NewServer(newFaultProxy(u, 1))
	defer proxy.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	call := func() (int, error) {
		req, _ := http.NewRequest(http.MethodPost, proxy.URL+"/", strings.NewReader("{}"))
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	fc := &faultControl{base: proxy.URL, heldFor: time.Second, client: client}
	if st, err := call(); err != nil || st != 200 {
		t.Fatalf("clear: %d %v", st, err)
	}
	if err := fc.set(t.Context(), "outage"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(); err == nil {
		t.Fatal("outage: the request got an answer")
	}
	if err := fc.set(t.Context(), "weather"); err != nil {
		t.Fatal(err)
	}
	if err := fc.set(t.Context(), "clear"); err != nil {
		t.Fatal(err)
	}
	if st, err := call(); err != nil || st != 200 {
		t.Fatalf("clear again: %d %v", st, err)
	}
	c, err := fc.counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Ops["GetItem"]; g.Requests != 3 || g.Outages != 1 || c.Mode != "clear" || len(c.Switches) != 4 {
		t.Errorf("counts %+v", c)
	}
	resp, err := client.Post(proxy.URL+faultRulesPath, "application/json", strings.NewReader(`{"weather":true,"outage":true}`))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("contradictory rules: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

func TestRuleDescriptions(t *testing.T) {
	rs := weatherRules(3 * time.Second)
	if len(rs) < 2 || rs[0].Ops[0] != "TransactWriteItems" || rs[0].Delay != 3*time.Second {
		t.Fatalf("weather rules: %+v", rs)
	}
	if d := describeRule(rs[0]); !strings.Contains(d, "1% held 3s") {
		t.Errorf("description %q", d)
	}
}

// The reliability report fails on a must-be-zero figure that is not 0 and
// on a run short of its size, and passes otherwise.
func TestReliabilityReportVerdicts(t *testing.T) {
	write := func(dir, name string, v any) {
		t.Helper()
		if err := writeJSONFile(dir+"/"+name, v); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(accepted int64, lost int64, lied int64) *result {
		r := &result{Mode: "load", OK: lost == 0 && lied == 0}
		r.Publish.OK, r.Connect.OK, r.Params.Subscribers = accepted, 1000, 1000
		r.Delivery.Lost, r.Delivery.Lied503 = lost, lied
		r.Sender = &senderR{Answers: map[string]int64{"200": accepted}}
		return r
	}
	mem := &memR{Messages: 10, Published: 10, Opens: 1, OpensOK: 1, OK: true,
		Samples: []rssSample{{Phase: "before", RSSMB: 10}, {Phase: "sweep +0s", T: 5, RSSMB: 12}}}
	for _, c := range []struct {
		name        string
		soak, fault *result
		fails       []string
	}{
		{"clean", mk(100000, 0, 0), mk(10000, 0, 0), nil},
		{"lost", mk(100000, 3, 0), mk(10000, 0, 0), []string{"soak: lost = 3"}},
		{"lying 503", mk(100000, 0, 0), mk(10000, 0, 2), []string{"fault: 503-but-delivered = 2"}},
		{"short", mk(99999, 0, 0), mk(10000, 0, 0), []string{"soak: 99999 messages accepted"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(dir, "soak.json", c.soak)
			write(dir, "fault.json", c.fault)
			write(dir, "mem.json", mem)
			failures, err := writeReliabilityReport(dir, dir+"/out.md")
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(failures, "\n")
			if len(c.fails) == 0 && len(failures) > 0 {
				t.Fatalf("want no failures, got %q", got)
			}
			for _, f := range c.fails {
				if !strings.Contains(got, f) {
					t.Errorf("failures %q lack %q", got, f)
				}
			}
		})
	}
}
