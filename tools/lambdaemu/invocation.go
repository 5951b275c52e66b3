package lambdaemu

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// FunctionError is an error the function reported for an invocation (POST
// .../invocation/{id}/error, or the error trailers of a streamed response),
// or for its init (POST .../init/error).
type FunctionError struct {
	Type       string          `json:"errorType"`
	Message    string          `json:"errorMessage"`
	StackTrace json.RawMessage `json:"stackTrace,omitempty"`
	// Payload is the error document as the runtime sent it.
	Payload []byte `json:"-"`
}

func (e *FunctionError) Error() string {
	switch {
	case e.Type != "" && e.Message != "":
		return fmt.Sprintf("lambdaemu: function error %s: %s", e.Type, e.Message)
	case e.Message != "":
		return "lambdaemu: function error: " + e.Message
	case e.Type != "":
		return "lambdaemu: function error " + e.Type
	}
	return fmt.Sprintf("lambdaemu: function error: %q", e.Payload)
}

func parseFunctionError(payload []byte, typeHeader string) *FunctionError {
	fe := &FunctionError{Payload: payload}
	if json.Unmarshal(payload, fe) != nil {
		fe.Message = strings.TrimSpace(string(payload))
	}
	if fe.Type == "" {
		fe.Type = typeHeader
	}
	return fe
}

// ExitError reports that a function process exited while it was expected to
// run (Lambda's Runtime.ExitError).
type ExitError struct {
	Err error // from exec.Cmd.Wait
	// Stderr is the end of the process's standard error, which usually says why.
	Stderr string
}

func (e *ExitError) Error() string {
	s := "lambdaemu: function process exited: " + e.Err.Error()
	if e.Stderr != "" {
		s += "; stderr ends with:\n" + e.Stderr
	}
	return s
}

func (e *ExitError) Unwrap() error { return e.Err }

// InitError reports a failed init phase: Err is a *FunctionError (the
// runtime posted to /runtime/init/error), an *ExitError (the process exited
// before asking for an invocation), or a timeout or start error.
type InitError struct {
	Function string
	Err      error
}

func (e *InitError) Error() string {
	return fmt.Sprintf("lambdaemu: init of function %q failed: %v", e.Function, e.Err)
}

func (e *InitError) Unwrap() error { return e.Err }

// invocation is one event on its way through the runtime API.
type invocation struct {
	id      string
	traceID string
	payload []byte
	ctx     context.Context

	deadline time.Time // set by the dispatcher before delivery

	result     chan outcome // capacity 1: the runtime's first answer
	resultOnce sync.Once
	responded  chan struct{} // closed when the runtime posts a response or an error
	respOnce   sync.Once
	finished   chan struct{} // closed when the runtime is done with the invocation
	finOnce    sync.Once
	aborted    chan struct{} // closed by abort
	abortOnce  sync.Once
	abortErr   error
}

type outcome struct {
	resp *rawResponse
	err  error
}

func newInvocation(ctx context.Context, payload []byte) *invocation {
	return &invocation{
		id:        newUUID(),
		traceID:   newTraceID(),
		payload:   payload,
		ctx:       ctx,
		result:    make(chan outcome, 1),
		responded: make(chan struct{}),
		finished:  make(chan struct{}),
		aborted:   make(chan struct{}),
	}
}

// answer delivers the first outcome to the caller; later ones are dropped.
func (inv *invocation) answer(o outcome) bool {
	first := false
	inv.resultOnce.Do(func() {
		inv.result <- o
		first = true
	})
	return first
}

func (inv *invocation) finish() { inv.finOnce.Do(func() { close(inv.finished) }) }

// abort ends the invocation with err, unless it already finished. The
// dispatcher kills the process of an aborted, unfinished invocation.
func (inv *invocation) abort(err error) {
	inv.abortOnce.Do(func() {
		inv.abortErr = err
		close(inv.aborted)
	})
	inv.answer(outcome{err: err})
}

// cause waits up to d for the invocation to be aborted and returns why.
func (inv *invocation) cause(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-inv.aborted:
		return inv.abortErr
	case <-t.C:
		return nil
	}
}

// rawResponse is the start of a response POSTed by the runtime.
type rawResponse struct {
	contentType string
	mode        string // Lambda-Runtime-Function-Response-Mode
	body        *relayBody
}

func (r *rawResponse) hasPrelude() bool { return mediaType(r.contentType) == contentTypeStreaming }

func (r *rawResponse) streamed() bool {
	return r.hasPrelude() || strings.EqualFold(r.mode, "streaming")
}

// relayBody hands the body of the runtime's POST .../response to the caller
// as it arrives: each Read reads the request body of the runtime API handler,
// which waits until the caller is done.
type relayBody struct {
	inv *invocation
	req *http.Request

	done chan struct{} // closed at the end: EOF, error, or Close

	mu       sync.Mutex
	ended    bool
	complete bool  // the whole body (and trailers) arrived
	err      error // returned by Reads after the end
}

func newRelayBody(inv *invocation, req *http.Request) *relayBody {
	return &relayBody{inv: inv, req: req, done: make(chan struct{})}
}

// end records the end of the body; it reports whether this call ended it.
func (b *relayBody) end(complete bool, err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return false
	}
	b.ended, b.complete, b.err = true, complete, err
	close(b.done)
	return true
}

func (b *relayBody) state() (ended, complete bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ended, b.complete, b.err
}

func (b *relayBody) Read(p []byte) (int, error) {
	if ended, _, err := b.state(); ended {
		return 0, err
	}
	n, err := b.req.Body.Read(p)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		// Trailers are readable once the body has been read to its end.
		if fe := trailerError(b.req.Trailer); fe != nil {
			b.end(true, fe)
			return n, fe
		}
		b.end(true, io.EOF)
		return n, io.EOF
	default:
		// The runtime's connection broke: most likely its process died, which
		// the dispatcher reports in a moment with a better error.
		cause := b.inv.cause(time.Second)
		if cause == nil {
			cause = fmt.Errorf("lambdaemu: response stream from the runtime broke: %w", err)
		}
		b.end(false, cause)
		return n, cause
	}
}

// Close ends the relay. Before the end of the body it abandons the
// invocation: the process is killed.
func (b *relayBody) Close() error {
	if b.end(false, ErrAbandoned) {
		b.inv.abort(ErrAbandoned)
	}
	return nil
}

// trailerError decodes the error trailers aws-lambda-go sends when the
// reader of a streamed response fails mid-stream.
func trailerError(tr http.Header) *FunctionError {
	typ := tr.Get(trailerErrorType)
	body := tr.Get(trailerErrorBody)
	if typ == "" && body == "" {
		return nil
	}
	payload, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		payload = []byte(body)
	}
	return parseFunctionError(payload, typ)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newTraceID returns an X-Ray trace header: Root=1-<epoch hex>-<96 random bits>.
func newTraceID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0",
		time.Now().Unix(), hex.EncodeToString(b[:12]), hex.EncodeToString(b[12:]))
}
