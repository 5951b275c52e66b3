// Package lambdaemu runs real AWS Lambda bootstrap binaries (custom runtime,
// e.g. programs built with aws-lambda-go and -tags lambda.norpc) on this
// machine, behind an emulated Lambda Runtime API (version 2018-06-01).
//
// Unlike SAM local and the AWS Runtime Interface Emulator it relays
// RESPONSE_STREAM responses progressively, as a function URL or an API
// Gateway REST API streaming integration does: every chunk the function
// writes reaches the caller as soon as the runtime posts it. It is meant for tests
// and for `make emulate`; it listens on 127.0.0.1 only.
//
// Each function process handles one invocation at a time, as on Lambda.
// Further invocations queue, or start more processes up to
// Function.Concurrency. A process that crashes or times out is killed and
// started again (a cold start) on the next invocation.
//
// # When the caller goes away
//
// On AWS, Lambda tells a response-streaming function nothing when the client
// of its function URL goes away (the browser tab is closed, the connection
// drops): its context is not cancelled, no signal arrives, its writes do not
// fail. The invocation runs on until the handler returns or the function's
// timeout kills it, and all that time is billed; what it writes after the
// client left is simply dropped. Buffered invocations are no different.
//
// The emulator does the same. The caller of an invocation leaves when the
// HTTP client of a handler (FunctionURLHandler and the others) disconnects,
// when the ctx given to Invoke or InvokeStream is done, or when
// StreamResponse.Body is closed before its end. The emulator then keeps
// reading the response the runtime posts and discards it, answering the
// runtime as usual, until the runtime has posted its whole response (or its
// error), the process exits, or Function.Timeout expires and the process is
// killed, as it would be on Lambda. Meanwhile the process is busy: further
// invocations go to other processes or wait. Only an invocation the function
// has not got yet (queued, or waiting for a cold start to end) is dropped
// when its caller leaves; the cold start itself goes on. Close alone stops
// invocations in progress.
//
// # Billed duration
//
// Every invocation the function got is recorded once it is over (see
// Invocation and Emulator.Invocations) and logged with a "report" line:
// from the moment its GET .../invocation/next returned to the function's
// last byte of response (the end of the body of its POST .../response, or
// its POST .../error), rounded up to the next whole millisecond as Lambda
// bills it ("billedMs"), together with whether and when the client left.
package lambdaemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Defaults for the zero values of Function's fields.
const (
	DefaultTimeout         = 15 * time.Minute // Lambda's maximum
	DefaultInitTimeout     = 10 * time.Second // Lambda's init phase limit
	DefaultShutdownTimeout = 2 * time.Second
)

const (
	contentTypeStreaming = "application/vnd.awslambda.http-integration-response"
	maxPreludeSize       = 1 << 20
	accountID            = "123456789012"
)

// ErrClosed is returned by invocations made on, or cut short by, a closed Emulator.
var ErrClosed = errors.New("lambdaemu: emulator closed")

// ErrTimeout is wrapped by the error of an invocation that did not complete
// before its deadline (Function.Timeout). The process is killed, as on Lambda.
var ErrTimeout = errors.New("lambdaemu: task timed out")

// ErrAbandoned is returned by reads of a response body that its caller
// closed before the end of the stream. The function is not told: it runs
// on, and the rest of its response is discarded.
var ErrAbandoned = errors.New("lambdaemu: response abandoned by the caller")

// Function describes a Lambda function to run.
type Function struct {
	// Path is the bootstrap executable. Required.
	Path string
	// Args are passed to the executable.
	Args []string
	// Name is the function name (AWS_LAMBDA_FUNCTION_NAME, the ARN). Default:
	// the name of the directory holding Path when Path is ".../bootstrap",
	// else the base name of Path.
	Name string
	// Env is the environment of the process, to which the Lambda variables
	// (AWS_LAMBDA_RUNTIME_API and the like) are added. Nil means os.Environ().
	Env []string
	// Dir is the working directory. Default: the directory holding Path
	// (Lambda runs bootstrap from its task root).
	Dir string
	// Timeout bounds every invocation; the deadline sent to the runtime
	// (Lambda-Runtime-Deadline-Ms) is the start of the invocation plus
	// Timeout. Default DefaultTimeout.
	Timeout time.Duration
	// InitTimeout bounds the time from process start to its first request
	// for an invocation. Default DefaultInitTimeout.
	InitTimeout time.Duration
	// ShutdownTimeout is how long Close waits after SIGTERM before killing
	// a process. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Concurrency is the maximum number of processes, hence of concurrent
	// invocations. Start starts one; more start on demand. Default 1.
	Concurrency int
	// Stdout and Stderr receive the output of the processes; nil discards it.
	Stdout, Stderr io.Writer
	// Logger receives the emulator's own events (inits, errors). Nil discards them.
	Logger *slog.Logger
}

// Emulator runs one Lambda function. Its methods are safe for concurrent use.
type Emulator struct {
	fn  Function
	arn string
	log *slog.Logger

	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	instances []*instance
	idle      []*instance
	pending   []*invocation
	initDur   time.Duration
	records   []Invocation // of the invocations that are over, oldest first
}

// Start starts the runtime API and one process of fn, and returns once that
// process has asked for its first invocation, i.e. its init phase is over.
// A process that exits, reports an init error, or does not ask in time makes
// Start fail with an *InitError. ctx bounds the start only.
func Start(ctx context.Context, fn Function) (*Emulator, error) {
	if fn.Path == "" {
		return nil, errors.New("lambdaemu: Function.Path is empty")
	}
	path, err := filepath.Abs(fn.Path)
	if err != nil {
		return nil, fmt.Errorf("lambdaemu: %w", err)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("lambdaemu: function executable: %w", err)
	}
	fn.Path = path
	if fn.Name == "" {
		fn.Name = filepath.Base(path)
		if fn.Name == "bootstrap" {
			fn.Name = filepath.Base(filepath.Dir(path))
		}
	}
	if fn.Env == nil {
		fn.Env = os.Environ()
	}
	if fn.Dir == "" {
		fn.Dir = filepath.Dir(path)
	}
	if fn.Timeout <= 0 {
		fn.Timeout = DefaultTimeout
	}
	if fn.InitTimeout <= 0 {
		fn.InitTimeout = DefaultInitTimeout
	}
	if fn.ShutdownTimeout <= 0 {
		fn.ShutdownTimeout = DefaultShutdownTimeout
	}
	if fn.Concurrency <= 0 {
		fn.Concurrency = 1
	}
	if fn.Stdout == nil {
		fn.Stdout = io.Discard
	}
	if fn.Stderr == nil {
		fn.Stderr = io.Discard
	}
	logger := fn.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Emulator{
		fn:   fn,
		arn:  fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", envRegion(fn.Env), accountID, fn.Name),
		log:  logger.With("function", fn.Name),
		done: make(chan struct{}),
	}

	in, err := e.newInstance()
	if err != nil {
		return nil, err
	}
	e.instances = append(e.instances, in)
	p, err := in.startProcess(ctx)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.initDur = p.initDuration
	e.idle = append(e.idle, in)
	return e, nil
}

// InitDuration is how long the first process took from its start to its
// first request for an invocation (Lambda's "Init Duration").
func (e *Emulator) InitDuration() time.Duration { return e.initDur }

// Response is the complete response of a function, as posted by its runtime.
type Response struct {
	RequestID   string
	ContentType string
	// Streamed tells whether the runtime streamed its response. The Body of a
	// streamed function URL response is the raw stream: the JSON prelude,
	// eight NUL bytes, then the body; use InvokeStream to have it parsed.
	Streamed bool
	Body     []byte
}

// Invoke invokes the function with payload and waits for the whole response.
// A function error is returned as *FunctionError; a crash as *ExitError;
// an exceeded deadline wraps ErrTimeout. Cancelling ctx makes Invoke return
// at once with its cause, but as on Lambda an invocation the function has
// got runs on to its end, its response discarded (see the package
// documentation).
func (e *Emulator) Invoke(ctx context.Context, payload []byte) (*Response, error) {
	inv, raw, err := e.invoke(ctx, payload)
	if err != nil {
		return nil, err
	}
	defer raw.body.Close()
	body, err := io.ReadAll(raw.body)
	if err != nil {
		return nil, err
	}
	return &Response{
		RequestID:   inv.id,
		ContentType: raw.contentType,
		Streamed:    raw.streamed(),
		Body:        body,
	}, nil
}

// StreamResponse is an HTTP response of a function, as a function URL sees it.
type StreamResponse struct {
	RequestID  string
	StatusCode int
	Headers    map[string]string
	// MultiValueHeaders come from the prelude of a streamed response; only
	// API Gateway REST APIs honour them, function URLs ignore them.
	MultiValueHeaders map[string][]string
	Cookies           []string
	// Streamed is false when the function gave a buffered response, which was
	// decoded as an events.LambdaFunctionURLResponse (or, lacking a
	// statusCode, taken as a JSON body, as function URLs do).
	Streamed bool
	// Body yields the body as the function writes it. A function error that
	// the runtime reports mid-stream surfaces as a *FunctionError from Read.
	// Close it. Closing it before the end, or the end of the ctx given to
	// InvokeStream, is the client disconnecting from a function URL: Reads
	// fail from then on (with ErrAbandoned, or the cause of ctx), while the
	// function, not told, runs on to its end and its output is discarded.
	Body io.ReadCloser
}

// InvokeStream invokes the function with payload, typically an
// events.LambdaFunctionURLRequest or an events.APIGatewayProxyRequest, and
// returns as soon as the response's status and headers are known: for a
// function that streams an HTTP integration response (lambdaurl.Start, or an
// events.APIGatewayProxyStreamingResponse), as soon as the prelude has been
// parsed; the body then streams. ctx covers the reading of the body too.
func (e *Emulator) InvokeStream(ctx context.Context, payload []byte) (*StreamResponse, error) {
	inv, raw, err := e.invoke(ctx, payload)
	if err != nil {
		return nil, err
	}
	if !raw.hasPrelude() {
		if raw.streamed() {
			// Streamed without the HTTP integration prelude: a raw body.
			return &StreamResponse{
				RequestID:  inv.id,
				StatusCode: 200,
				Headers:    map[string]string{"Content-Type": raw.contentType},
				Streamed:   true,
				Body:       raw.body,
			}, nil
		}
		defer raw.body.Close()
		payload, err := io.ReadAll(raw.body)
		if err != nil {
			return nil, err
		}
		resp, err := decodeURLResponse(payload)
		if err != nil {
			return nil, err
		}
		resp.RequestID = inv.id
		return resp, nil
	}

	br := bufio.NewReader(raw.body)
	prelude, err := readPrelude(br)
	if err != nil {
		raw.body.Close()
		return nil, err
	}
	var p struct {
		StatusCode        int                 `json:"statusCode"`
		Headers           map[string]string   `json:"headers"`
		MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
		Cookies           []string            `json:"cookies"`
	}
	if err := json.Unmarshal(prelude, &p); err != nil {
		raw.body.Close()
		return nil, fmt.Errorf("lambdaemu: malformed streaming response prelude %q: %w", prelude, err)
	}
	if p.StatusCode == 0 {
		p.StatusCode = 200
	}
	return &StreamResponse{
		RequestID:         inv.id,
		StatusCode:        p.StatusCode,
		Headers:           p.Headers,
		MultiValueHeaders: p.MultiValueHeaders,
		Cookies:           p.Cookies,
		Streamed:          true,
		Body:              readCloser{br, raw.body},
	}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// readPrelude reads up to and including the eight NUL bytes that end the
// JSON prelude of an HTTP integration response. JSON never holds a raw NUL.
func readPrelude(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	zeros := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("lambdaemu: streaming response ended inside its prelude (%q)", buf)
			}
			return nil, err
		}
		if c == 0 {
			if zeros++; zeros == 8 {
				return buf, nil
			}
			continue
		}
		if zeros > 0 {
			return nil, fmt.Errorf("lambdaemu: malformed streaming response: %d NUL bytes after prelude %q, want 8", zeros, buf)
		}
		if buf = append(buf, c); len(buf) > maxPreludeSize {
			return nil, errors.New("lambdaemu: streaming response prelude larger than 1 MiB")
		}
	}
}

// decodeURLResponse applies the function URL (and HTTP API payload 2.0)
// rules to a buffered response payload.
func decodeURLResponse(payload []byte) (*StreamResponse, error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(payload, &probe) != nil || probe["statusCode"] == nil {
		return &StreamResponse{
			StatusCode: 200,
			Headers:    map[string]string{"Content-Type": "application/json"},
			Body:       io.NopCloser(bytes.NewReader(payload)),
		}, nil
	}
	// A superset of events.LambdaFunctionURLResponse.
	var r events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("lambdaemu: malformed function URL response: %w", err)
	}
	if r.StatusCode < 100 || r.StatusCode > 999 {
		return nil, fmt.Errorf("lambdaemu: malformed function URL response: statusCode %d", r.StatusCode)
	}
	body, err := decodeBody(r.Body, r.IsBase64Encoded)
	if err != nil {
		return nil, err
	}
	headers := r.Headers
	for k, vs := range r.MultiValueHeaders {
		if headers == nil {
			headers = map[string]string{}
		}
		if _, ok := headers[k]; !ok {
			headers[k] = strings.Join(vs, ",")
		}
	}
	return &StreamResponse{
		StatusCode: r.StatusCode,
		Headers:    headers,
		Cookies:    r.Cookies,
		Body:       io.NopCloser(bytes.NewReader(body)),
	}, nil
}

// Close stops the emulator: invocations in progress or queued fail with
// ErrClosed, processes get SIGTERM and, after Function.ShutdownTimeout,
// SIGKILL, and the runtime API servers stop. It returns once all is stopped.
func (e *Emulator) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	pending := e.pending
	e.pending = nil
	instances := e.instances
	e.mu.Unlock()

	for _, inv := range pending {
		inv.abort(ErrClosed)
	}
	e.wg.Wait() // the dispatch loops notice e.done and return
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Go(in.shutdown)
	}
	wg.Wait()
	return nil
}

// invoke queues an invocation and waits for the runtime's first answer: the
// start of its response, or an error. When ctx ends first, the caller has
// left: invoke returns its cause, and the invocation, if the function has
// got it, runs on.
func (e *Emulator) invoke(ctx context.Context, payload []byte) (*invocation, *rawResponse, error) {
	if ctx.Err() != nil {
		return nil, nil, context.Cause(ctx)
	}
	inv := newInvocation(ctx, payload)
	if err := e.dispatch(inv); err != nil {
		inv.unwatch()
		return nil, nil, err
	}
	select {
	case o := <-inv.result:
		return inv, o.resp, o.err
	case <-inv.left:
		// An answer given meanwhile needs no release: once the caller has
		// left, the body is read and discarded without it.
		return nil, nil, inv.goneErr
	}
}

// dispatch hands inv to an idle instance, to a new one if Concurrency
// allows, or queues it.
func (e *Emulator) dispatch(inv *invocation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	var in *instance
	switch {
	case len(e.idle) > 0:
		in = e.idle[len(e.idle)-1]
		e.idle = e.idle[:len(e.idle)-1]
	case len(e.instances) < e.fn.Concurrency:
		var err error
		if in, err = e.newInstance(); err != nil {
			return err
		}
		e.instances = append(e.instances, in)
	default:
		e.pending = append(e.pending, inv)
		return nil
	}
	e.wg.Go(func() {
		for inv != nil {
			in.run(inv)
			inv = e.next(in)
		}
	})
	return nil
}

// next returns the next queued invocation for in, or parks in as idle.
func (e *Emulator) next(in *instance) *invocation {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.pending) > 0 {
		inv := e.pending[0]
		e.pending[0] = nil
		e.pending = e.pending[1:]
		switch {
		case isClosed(inv.aborted):
		case isClosed(inv.left):
			inv.abort(inv.goneErr) // dropped before it reached the function
		default:
			return inv
		}
	}
	if !e.closed {
		e.idle = append(e.idle, in)
	}
	return nil
}

func envRegion(env []string) string {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v := lookupEnv(env, k); v != "" {
			return v
		}
	}
	return "us-east-1"
}

func lookupEnv(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as in os/exec
		}
	}
	return v
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// hostOnly strips the port from host:port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(contentType))
	}
	return mt
}
