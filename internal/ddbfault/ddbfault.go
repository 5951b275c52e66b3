// Package ddbfault is a fault-injecting DynamoDB for tests. It sits between a
// client and DynamoDB Local and imitates what the real DynamoDB does to a
// client now and then, which DynamoDB Local never does:
//
//   - it throttles (ProvisionedThroughputExceededException, ThrottlingException,
//     RequestLimitExceeded, or a TransactionCanceledException whose reasons are
//     all ThrottlingError);
//   - it applies a write and then answers HTTP 500 InternalServerError, or
//     the reply is lost on the way back (the connection drops after the write
//     was applied), so that the client's retry of a conditional write fails
//     its own condition;
//   - it is unreachable (connection refused);
//   - it is slow, or holds a writer for seconds.
//
// Faults are chosen by [Rule]s held in an [Injector]. The Injector works as an
// [http.RoundTripper] for an in-process AWS SDK client ([Injector.Transport])
// and as a reverse proxy for processes the test does not link, such as real
// Lambda binaries ([Injector.Handler]). Error answers carry the exact status,
// headers and JSON bodies DynamoDB sends, so the AWS SDK for Go v2 decodes them
// into its typed errors (*types.ProvisionedThroughputExceededException, ...)
// and its retryer treats them as it treats the real ones.
//
// Typical use:
//
//	inj := ddbfault.New(1)
//	client := dynamotest.Client(t, endpoint, func(o *dynamodb.Options) {
//		o.HTTPClient = &http.Client{Transport: inj.Transport(nil)}
//	})
//	inj.Set(ddbfault.Rule{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.LostReply, Limit: 1})
package ddbfault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kind of fault.
type Kind int

const (
	// Pass forwards the request unchanged (useful with Delay only).
	Pass Kind = iota
	// Throttle answers a throttling error without forwarding (see Rule.Throttle).
	Throttle
	// ApplyThen500 forwards the request (a write is applied), then answers
	// HTTP 500 InternalServerError instead of DynamoDB's reply.
	ApplyThen500
	// LostReply forwards the request (a write is applied), then fails it as if
	// the connection dropped before the reply came.
	LostReply
	// Outage fails at once as if the connection was refused; nothing is
	// forwarded.
	Outage
)

func (k Kind) String() string {
	switch k {
	case Pass:
		return "Pass"
	case Throttle:
		return "Throttle"
	case ApplyThen500:
		return "ApplyThen500"
	case LostReply:
		return "LostReply"
	case Outage:
		return "Outage"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Throttle error shapes for Rule.Throttle.
const (
	ProvisionedThroughputExceeded = "ProvisionedThroughputExceededException"
	ThrottlingException           = "ThrottlingException"
	RequestLimitExceeded          = "RequestLimitExceeded"
	TransactionCanceled           = "TransactionCanceled"
)

// Rule says which requests get which fault. Rules are tried in order; the
// first one that matches a request and hits it (Fraction, Limit) decides what
// happens to it. A request no rule hits passes unchanged.
type Rule struct {
	// Ops are DynamoDB operation names from X-Amz-Target ("PutItem",
	// "TransactWriteItems", "Query", ...); empty means every operation.
	Ops []string
	// Contains restricts the rule to requests whose JSON body contains this
	// substring (e.g. `"session#abc"`); empty means all.
	Contains string
	Kind     Kind
	// Delay holds the request this long before acting (also for Pass: a slow
	// DynamoDB, or a writer held for seconds). A request whose context ends
	// while it is held fails with the context's error and is not forwarded.
	Delay time.Duration
	// Fraction is the share of matching requests hit, 0 < f <= 1; 0 means 1
	// (all). The choice uses the Injector's seeded source, so a run with the
	// same seed and the same requests in the same order hits the same ones.
	Fraction float64
	// Limit is the most requests this rule hits (counted from Set); 0 means
	// unlimited.
	Limit int
	// Throttle is the error shape a Throttle answers with:
	// ProvisionedThroughputExceeded (the default, also for ""),
	// ThrottlingException, RequestLimitExceeded, or TransactionCanceled (a
	// TransactionCanceledException whose CancellationReasons are all
	// {"Code":"ThrottlingError"}, one per item of the request; for an
	// operation that is not a transaction it falls back to
	// ProvisionedThroughputExceeded).
	Throttle string
}

// OpCount is what the Injector saw of one operation: requests, and how many
// got each fault. Delayed counts requests held by a rule's Delay, whatever its
// Kind.
type OpCount struct {
	Requests, Throttled, Applied500, LostReplies, Outages, Delayed int64
}

// Injector holds the rules and the counts. It is safe for concurrent use; Set
// and Clear take effect for requests that arrive afterwards.
type Injector struct {
	mu     sync.Mutex
	rng    *rand.Rand
	rules  []ruleState
	counts map[string]OpCount
	reqID  atomic.Uint64
}

type ruleState struct {
	Rule
	hits int
}

// New returns an Injector with no rules (everything passes) whose Fraction
// choices come from a source seeded with seed.
func New(seed uint64) *Injector {
	return &Injector{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		counts: map[string]OpCount{},
	}
}

// Set replaces the rules (none: everything passes) and restarts their Limits.
// It panics on a Fraction outside [0, 1] or a negative Limit.
func (in *Injector) Set(rules ...Rule) {
	rs := make([]ruleState, len(rules))
	for i, r := range rules {
		if r.Fraction < 0 || r.Fraction > 1 || r.Limit < 0 {
			panic(fmt.Sprintf("ddbfault: rule %d: Fraction %v must be in [0, 1] and Limit %d >= 0", i, r.Fraction, r.Limit))
		}
		r.Ops = slices.Clone(r.Ops)
		rs[i] = ruleState{Rule: r}
	}
	in.mu.Lock()
	in.rules = rs
	in.mu.Unlock()
}

// Clear removes all rules: everything passes.
func (in *Injector) Clear() { in.Set() }

// Counts returns a copy of the counts per operation. Requests without an
// X-Amz-Target header are counted under "(none)".
func (in *Injector) Counts() map[string]OpCount {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]OpCount, len(in.counts))
	for k, v := range in.counts {
		out[k] = v
	}
	return out
}

// Requests is how many requests of op the Injector has seen.
func (in *Injector) Requests(op string) int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.counts[op].Requests
}

// ResetCounts sets all counts to zero (the rules and their Limits are kept).
func (in *Injector) ResetCounts() {
	in.mu.Lock()
	in.counts = map[string]OpCount{}
	in.mu.Unlock()
}

// decision is what to do with one request.
type decision struct {
	kind     Kind
	delay    time.Duration
	throttle string
}

// decide counts the request and picks the first rule that matches and hits.
func (in *Injector) decide(op string, body []byte) decision {
	in.mu.Lock()
	defer in.mu.Unlock()
	var d decision
	for i := range in.rules {
		r := &in.rules[i]
		if len(r.Ops) > 0 && !slices.Contains(r.Ops, op) {
			continue
		}
		if r.Contains != "" && !bytes.Contains(body, []byte(r.Contains)) {
			continue
		}
		if r.Limit > 0 && r.hits >= r.Limit {
			continue
		}
		if r.Fraction > 0 && r.Fraction < 1 && in.rng.Float64() >= r.Fraction {
			continue
		}
		r.hits++
		d = decision{kind: r.Kind, delay: r.Delay, throttle: r.Throttle}
		break
	}
	c := in.counts[op]
	c.Requests++
	if d.delay > 0 {
		c.Delayed++
	}
	switch d.kind {
	case Throttle:
		c.Throttled++
	case ApplyThen500:
		c.Applied500++
	case LostReply:
		c.LostReplies++
	case Outage:
		c.Outages++
	}
	in.counts[op] = c
	return d
}

// operation is the DynamoDB operation named by X-Amz-Target
// ("DynamoDB_20120810.PutItem" -> "PutItem"), or "(none)".
func operation(h http.Header) string {
	op := h.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	if op == "" {
		return "(none)"
	}
	return op
}

// Transport wraps base (nil: a fresh http.Transport with Proxy: nil) for an
// in-process SDK client. Throttle and ApplyThen500 return DynamoDB's error
// responses; LostReply forwards, reads and discards the reply, then returns a
// *net.OpError wrapping ECONNRESET (what a reset connection gives); Outage
// returns a *net.OpError wrapping ECONNREFUSED without forwarding. The AWS SDK
// retries all of these by default (throttling codes, status 500, and
// connection errors).
func (in *Injector) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = newBaseTransport()
	}
	return &transport{in: in, base: base}
}

func newBaseTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 64
	return t
}

type transport struct {
	in   *Injector
	base http.RoundTripper
	// mark wraps the errors of LostReply and Outage in *injectedError, for
	// Handler, which answers them by closing the client's connection.
	mark bool
}

// injectedError marks a connection error that the Injector made up.
type injectedError struct {
	kind Kind
	err  error
}

func (e *injectedError) Error() string { return e.err.Error() }
func (e *injectedError) Unwrap() error { return e.err }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	op := operation(req.Header)
	d := t.in.decide(op, body)

	if d.delay > 0 {
		timer := time.NewTimer(d.delay)
		select {
		case <-timer.C:
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		}
	}

	switch d.kind {
	case Throttle:
		return t.in.throttleResponse(req, op, body, d.throttle), nil
	case Outage:
		return nil, t.connErr(Outage, &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(req.URL.Host),
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	}

	resp, err := t.base.RoundTrip(forwardRequest(req, body))
	if err != nil || d.kind == Pass {
		return resp, err
	}
	// ApplyThen500 or LostReply: DynamoDB has applied the request; its reply
	// goes nowhere.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if d.kind == ApplyThen500 {
		return t.in.errorResponse(req, http.StatusInternalServerError, map[string]any{
			"__type":  "com.amazonaws.dynamodb.v20120810#InternalServerError",
			"message": "Internal server error",
		}), nil
	}
	return nil, t.connErr(LostReply, &net.OpError{Op: "read", Net: "tcp", Addr: tcpAddr(req.URL.Host),
		Err: os.NewSyscallError("read", syscall.ECONNRESET)})
}

func (t *transport) connErr(k Kind, err error) error {
	if t.mark {
		return &injectedError{kind: k, err: err}
	}
	return err
}

// CloseIdleConnections closes base's idle connections, if base can.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// forwardRequest is req with body restored (a RoundTripper must not change
// the request it was given).
func forwardRequest(req *http.Request, body []byte) *http.Request {
	out := req.Clone(req.Context())
	if req.Body == nil {
		return out
	}
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	return out
}

// tcpAddr is host as a *net.TCPAddr when it is an IP and a port (no name is
// looked up), else nil.
func tcpAddr(host string) net.Addr {
	ap, err := netip.ParseAddrPort(host)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// Messages DynamoDB sends with its throttling errors.
const (
	msgThroughput    = "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."
	msgThrottling    = "Rate of requests exceeds the allowed throughput."
	msgRequestLimit  = "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase"
	msgReasonThrottl = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html."
)

// throttleResponse is DynamoDB's HTTP 400 answer for shape.
func (in *Injector) throttleResponse(req *http.Request, op string, body []byte, shape string) *http.Response {
	const ns = "com.amazonaws.dynamodb.v20120810#"
	var v map[string]any
	switch shape {
	case ThrottlingException:
		v = map[string]any{"__type": ns + "ThrottlingException", "message": msgThrottling}
	case RequestLimitExceeded:
		v = map[string]any{"__type": ns + "RequestLimitExceeded", "message": msgRequestLimit}
	case TransactionCanceled:
		if n, ok := transactionItems(op, body); ok {
			reasons := make([]map[string]string, n)
			codes := make([]string, n)
			for i := range reasons {
				reasons[i] = map[string]string{"Code": "ThrottlingError", "Message": msgReasonThrottl}
				codes[i] = "ThrottlingError"
			}
			v = map[string]any{
				"__type":              ns + "TransactionCanceledException",
				"CancellationReasons": reasons,
				"Message":             "Transaction cancelled, please refer cancellation reasons for specific reasons [" + strings.Join(codes, ", ") + "]",
			}
		}
	}
	if v == nil {
		v = map[string]any{"__type": ns + "ProvisionedThroughputExceededException", "message": msgThroughput}
	}
	return in.errorResponse(req, http.StatusBadRequest, v)
}

// transactionItems is the number of items of a transaction request (at least
// 1), and whether op is a transaction at all.
func transactionItems(op string, body []byte) (int, bool) {
	switch op {
	case "TransactWriteItems", "TransactGetItems", "ExecuteTransaction":
	default:
		return 0, false
	}
	var in struct {
		TransactItems      []json.RawMessage
		TransactStatements []json.RawMessage
	}
	_ = json.Unmarshal(body, &in)
	return max(1, len(in.TransactItems)+len(in.TransactStatements)), true
}

// errorResponse is a DynamoDB error answer: JSON 1.0 body, request id, CRC32.
func (in *Injector) errorResponse(req *http.Request, status int, v map[string]any) *http.Response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings and slices of maps of strings
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Amzn-Requestid", in.requestID())
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       req,
	}
}

// requestID is a 52-character id like DynamoDB's, recognisable as injected.
func (in *Injector) requestID() string {
	return fmt.Sprintf("DDBFAULT%044d", in.reqID.Add(1))
}

// Handler is a reverse proxy to upstream (DynamoDB Local) applying the same
// rules, for processes the test does not link (real Lambda binaries). Throttle
// and ApplyThen500 answer DynamoDB's error responses; LostReply hijacks and
// closes (with a reset) the client's connection after upstream applied the
// request; Outage closes it without forwarding. The Host header is passed on
// unchanged, so the client's signature stays valid.
func (in *Injector) Handler(upstream *url.URL) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host
		},
		Transport: &transport{in: in, base: newBaseTransport(), mark: true},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var ie *injectedError
			if errors.As(err, &ie) {
				dropConnection(w)
				return
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return // the client is gone, or gave up while held
			}
			http.Error(w, "ddbfault: upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	return rp
}

// dropConnection closes the client's connection without an answer, with a
// TCP reset where it can.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the handler, which resets the stream.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// Weather is a day of production DynamoDB in rules: a throttling storm on
// every operation (in each shape the SDK can meet), replies lost after the
// write was applied, 500s after applying, and a few writers held for
// heldFor (throttled retries that stretch to seconds). Rates are per
// request, so the SDK's own retries meet them too.
func Weather(heldFor time.Duration) []Rule {
	writes := []string{"PutItem", "UpdateItem", "TransactWriteItems"}
	return []Rule{
		// A message goes in a PutItem, or with an idempotency key in a
		// TransactWriteItems: hold both kinds of writer.
		{Ops: []string{"PutItem", "TransactWriteItems"}, Contains: `"kind":{"S":"m"}`, Kind: Pass, Delay: heldFor, Fraction: 0.01},
		{Ops: []string{"TransactWriteItems"}, Kind: Throttle, Throttle: TransactionCanceled, Fraction: 0.05},
		{Ops: writes, Kind: LostReply, Fraction: 0.08},
		{Ops: writes, Kind: ApplyThen500, Fraction: 0.04},
		{Kind: Throttle, Throttle: ThrottlingException, Fraction: 0.04},
		{Kind: Throttle, Throttle: RequestLimitExceeded, Fraction: 0.03},
		{Kind: Throttle, Fraction: 0.08},
	}
}
