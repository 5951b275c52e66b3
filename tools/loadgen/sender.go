package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// With -sender, each logical message is published as a correct sender
// would, by what the relay's answers promise:
//
//	200          stored, and will reach every targeted stream exactly once: done.
//	503          NOT stored and never delivered: retry after Retry-After with a
//	             NEW Idempotency-Key (trusting that nothing was stored).
//	504          outcome unknown (may be stored): retry with the SAME key.
//	429          rate limited: wait Retry-After, same key.
//	500, no answer (timeout, broken connection)
//	             outcome unknown: retry with the same key, as after a 504.
//	other 4xx    the request is wrong: give up on the message.
//
// Once a key has had an unknown outcome it is kept to the end, also through
// later 503s: the 503 says that retry stored nothing, not that the earlier
// attempt did not. So a key is dropped for a new one only when its one and
// only answer was 503.
//
// Every attempt carries the message's marker (one per logical message,
// whatever the retries) followed by ":k<generation>", the number of the key
// it was sent with. A subscriber that sees a generation whose only answer was
// 503 has caught a lying 503; one that sees the same marker twice otherwise
// has caught a duplicate.

// answerClass is what one publish attempt got.
type answerClass int

const (
	ans200 answerClass = iota
	ans503
	ans504
	ans429
	ans500
	ansNoAnswer // transport error or timeout: no status at all
	ansOther    // any other status (4xx), or a 200 that does not say success
	nClasses
)

var classNames = [nClasses]string{"200", "503", "504", "429", "500", "no answer", "other"}

func (c answerClass) String() string { return classNames[c] }

// classify maps a status to its class.
func classify(status int, success bool) answerClass {
	switch {
	case status == http.StatusOK && success:
		return ans200
	case status == http.StatusServiceUnavailable:
		return ans503
	case status == http.StatusGatewayTimeout:
		return ans504
	case status == http.StatusTooManyRequests:
		return ans429
	case status == http.StatusInternalServerError:
		return ans500
	}
	return ansOther
}

// maxGen is the last key generation: a message that got 503 this many times
// keeps its last key.
const maxGen = 63

// sendState is one logical message's way through its attempts.
type sendState struct {
	gen       int    // generation of the current key
	ambiguous bool   // the current key had an unknown outcome (504, 500, no answer)
	clean503  uint64 // bit g: key generation g got 503 and nothing else (nothing stored, by contract)
	attempts  int
	got503    bool // some attempt got 503
	unknown   bool // some attempt had an unknown outcome
}

// step is what the sender does after an answer of class c (retryAfter: the
// answer's Retry-After, 0 if none): whether the message is finished (done),
// whether it was accepted, and how long to wait before the next attempt. It
// moves to a new key when the rules say so.
func (s *sendState) step(c answerClass, retryAfter time.Duration) (done, accepted bool, wait time.Duration) {
	s.attempts++
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	switch c {
	case ans200:
		return true, true, 0
	case ans503:
		s.got503 = true
		if !s.ambiguous && s.gen < maxGen {
			s.clean503 |= 1 << s.gen
			s.gen++
		}
		return false, false, retryAfter
	case ans504, ans500, ansNoAnswer:
		s.ambiguous, s.unknown = true, true
		return false, false, retryAfter
	case ans429:
		return false, false, retryAfter
	}
	return true, false, 0 // a request the relay will never take
}

// parseRetryAfter reads a Retry-After of whole seconds, bounded to 30 s.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, 30)) * time.Second
}

// answers counts answers by class, overall and per phase.
type answers struct {
	total  [nClasses]atomic.Int64
	phases []*[nClasses]atomic.Int64 // index: phase (see gen.phaseOf)
}

func newAnswers(phases int) *answers {
	a := &answers{phases: make([]*[nClasses]atomic.Int64, phases)}
	for i := range a.phases {
		a.phases[i] = new([nClasses]atomic.Int64)
	}
	return a
}

func (a *answers) add(phase int, c answerClass) {
	a.total[c].Add(1)
	if phase >= 0 && phase < len(a.phases) {
		a.phases[phase][c].Add(1)
	}
}

// counts is the classes as a map, for JSON.
func classCounts(c *[nClasses]atomic.Int64) map[string]int64 {
	out := make(map[string]int64, nClasses)
	for i := range nClasses {
		out[answerClass(i).String()] = c[i].Load()
	}
	return out
}

// genSet records, per message number, which key generations were delivered
// (bit g), in chunks made on first use so that subscribers can set bits
// without a lock.
type genSet struct {
	mu     sync.Mutex
	chunks [1 << 14]atomic.Pointer[[1 << 16]atomic.Uint64]
}

func (s *genSet) chunk(n int64, create bool) *[1 << 16]atomic.Uint64 {
	i := n >> 16
	if n < 0 || i >= int64(len(s.chunks)) {
		return nil
	}
	c := s.chunks[i].Load()
	if c == nil && create {
		s.mu.Lock()
		if c = s.chunks[i].Load(); c == nil {
			c = new([1 << 16]atomic.Uint64)
			s.chunks[i].Store(c)
		}
		s.mu.Unlock()
	}
	return c
}

func (s *genSet) add(n int64, gen int) {
	if c := s.chunk(n, true); c != nil && gen >= 0 && gen <= maxGen {
		c[n&(1<<16-1)].Or(1 << gen)
	}
}

func (s *genSet) get(n int64) uint64 {
	if c := s.chunk(n, false); c != nil {
		return c[n&(1<<16-1)].Load()
	}
	return 0
}

// senderBody is message n's JSON with the marker and key generation gen.
func (g *gen) senderBody(b []byte, n int64, target int32, sent int64, gen int) []byte {
	b = append(b[:0], `{"message":"`...)
	b = g.appendMarker(b, n, target, sent)
	b = append(b, ":k"...)
	b = strconv.AppendInt(b, int64(gen), 10)
	b = append(b, '"')
	if target >= 0 {
		b = append(b, `,"sessionId":"`...)
		b = append(b, g.sessionIDOf(int(target))...)
		b = append(b, '"')
	}
	return append(b, '}')
}

func (g *gen) idemKey(n int64, gen int) string {
	return "lg-" + g.run + "-" + strconv.FormatInt(n, 10) + "-k" + strconv.Itoa(gen)
}

// attempt sends one POST and classifies the answer.
func (g *gen) attempt(ctx context.Context, body []byte, key string) (answerClass, time.Duration, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/api/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := g.client.Do(req)
	if err != nil {
		why := "error"
		if ctx.Err() != nil {
			why = "canceled"
		} else if ne, isNet := errors.AsType[net.Error](err); isNet && ne.Timeout() {
			why = "timeout"
		}
		return ansNoAnswer, 0, why
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if rerr != nil {
		return ansNoAnswer, 0, "read error"
	}
	c := classify(resp.StatusCode, bytes.Contains(b, []byte(`"success":true`)))
	return c, parseRetryAfter(resp.Header.Get("Retry-After")), strconv.Itoa(resp.StatusCode)
}

// send publishes one logical message as a correct sender (see above), for
// at most cfg.RetryFor from its first attempt.
func (g *gen) send(ctx context.Context, w *worker) {
	n := g.nextN.Add(1) - 1
	target := g.targetOf(n)
	sent := time.Now()
	giveUp := sent.Add(g.cfg.RetryFor)
	var st sendState
	accepted := false
	for {
		w.body = g.senderBody(w.body, n, target, sent.UnixNano(), st.gen)
		c, ra, why := g.attempt(ctx, w.body, g.idemKey(n, st.gen))
		g.answers.add(g.phaseOf(time.Now()), c)
		if c != ans200 {
			w.fails[why]++
		}
		done, ok, wait := st.step(c, ra)
		if done {
			accepted = ok
			break
		}
		// A little jitter so that retries after an outage do not all land
		// in the same millisecond.
		wait += time.Duration(rand.IntN(200)) * time.Millisecond
		if time.Now().Add(wait).After(giveUp) || !sleepCtx(ctx, wait) {
			break
		}
	}
	rec := pubRecord{n: n, target: target, ok: accepted, clean503: st.clean503, got503: st.got503, unknown: st.unknown}
	if accepted {
		w.lat.add(time.Since(sent))
		g.published.Add(1)
		g.expected.Add(g.weight(target))
		if st.attempts > 1 {
			g.retried.Add(1)
		}
	} else {
		g.failed.Add(1)
		if st.unknown {
			g.ambiguous.Add(g.weight(target))
		}
	}
	w.recs = append(w.recs, rec)
}

// senderR is what -sender adds to a result.
type senderR struct {
	// Answers by class, over the whole run and per phase.
	Answers map[string]int64 `json:"answers"`
	// Logical messages: accepted (200 in the end), abandoned (no 200 within
	// -retry-for), accepted after more than one attempt.
	Accepted  int64 `json:"accepted"`
	Abandoned int64 `json:"abandoned"`
	Retried   int64 `json:"retried"`
	// Abandoned messages whose every key got only 503s: nothing stored, by
	// the relay's word.
	AbandonedAll503 int64 `json:"abandoned_all_503"`
	// Logical messages one of whose 503-answered attempts was delivered
	// (the relay said "not stored" and delivered it): must be 0.
	Lied503 int64 `json:"lied_503"`
	// Deliveries to a stream of a marker it had already seen, of a message
	// with a lying 503 (so counted here, not under duplicated).
	Lied503Dups int64 `json:"lied_503_duplicate_deliveries"`
	// Samples: message numbers and their delivered / 503-answered key
	// generations, for the report.
	Lied503Samples []string `json:"lied_503_samples,omitempty"`
}

// finishSender sorts the deliveries of -sender messages: a delivered key
// generation that was answered 503 is a lying 503, and the duplicates it
// explains are counted with it, not as duplicates.
func (g *gen) finishSender(res *result, recs []pubRecord) {
	sr := &senderR{Answers: classCounts(&g.answers.total), Accepted: g.published.Load(),
		Abandoned: g.failed.Load(), Retried: g.retried.Load()}
	lied := map[int64]bool{}
	for _, r := range recs {
		if !r.ok && !r.unknown && r.got503 {
			sr.AbandonedAll503++
		}
		if r.clean503 == 0 {
			continue
		}
		if seen := g.genSeen.get(r.n); seen&r.clean503 != 0 {
			lied[r.n] = true
			if len(sr.Lied503Samples) < 20 {
				sr.Lied503Samples = append(sr.Lied503Samples, fmt.Sprintf(
					"message %d (target %d, accepted in the end: %v, key %s...): key generations delivered %b, answered only 503 %b",
					r.n, r.target, r.ok, g.idemKey(r.n, 0), seen, r.clean503))
			}
		}
	}
	sr.Lied503 = int64(len(lied))
	for _, s := range g.subs {
		if !s.connected {
			continue
		}
		for _, n := range s.dupNs {
			if lied[n] {
				sr.Lied503Dups++
			}
		}
	}
	res.Delivery.Duplicated -= uint64(sr.Lied503Dups)
	res.Delivery.Lied503 = sr.Lied503
	res.Sender = sr
}
