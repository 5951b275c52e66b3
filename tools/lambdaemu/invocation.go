package lambdaemu

import (
	"bytes"
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
	unwatch func() bool // stops watching the caller's context

	deadline time.Time // set by the dispatcher before delivery

	result    chan outcome  // capacity 1: the runtime's first answer, unless the caller left
	responded chan struct{} // closed when the runtime posts a response or an error
	respOnce  sync.Once
	finished  chan struct{} // closed when the runtime is done with the invocation
	finOnce   sync.Once
	aborted   chan struct{} // closed by abort
	abortOnce sync.Once
	abortErr  error
	left      chan struct{} // closed by leave: the caller is gone

	mu       sync.Mutex
	answered bool
	goneErr  error     // why the caller left; set before left is closed
	goneAt   time.Time // when, if before the end of the invocation
	start    time.Time // when the runtime got it: its GET .../next returned
	init     time.Duration
	reported bool
	bytes    int64 // response bytes the runtime posted
	dropped  int64 // of these, discarded because the caller had left
}

type outcome struct {
	resp *rawResponse
	err  error
}

// newInvocation returns an invocation for payload whose caller leaves when
// ctx is done.
func newInvocation(ctx context.Context, payload []byte) *invocation {
	inv := &invocation{
		id:        newUUID(),
		traceID:   newTraceID(),
		payload:   payload,
		result:    make(chan outcome, 1),
		responded: make(chan struct{}),
		finished:  make(chan struct{}),
		aborted:   make(chan struct{}),
		left:      make(chan struct{}),
	}
	inv.unwatch = context.AfterFunc(ctx, func() { inv.leave(context.Cause(ctx)) })
	return inv
}

// answer delivers the first outcome to the caller, unless the caller has
// left; it reports whether the caller takes it.
func (inv *invocation) answer(o outcome) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.answered || isClosed(inv.left) {
		return false
	}
	inv.answered = true
	inv.result <- o
	return true
}

// leave records that the caller is gone (err says why: its context, or
// ErrAbandoned). The function is not told: an invocation it has got runs on,
// and what it still writes is discarded; one it has not got yet is dropped.
func (inv *invocation) leave(err error) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if isClosed(inv.left) {
		return
	}
	inv.goneErr = err
	if !inv.reported {
		inv.goneAt = time.Now()
	}
	close(inv.left)
}

// started records that the runtime got the invocation, with the init
// duration of its process when this is the process's first invocation.
func (inv *invocation) started(at time.Time, init time.Duration) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.start, inv.init = at, init
}

func (inv *invocation) count(n int, dropped bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.bytes += int64(n)
	if dropped {
		inv.dropped += int64(n)
	}
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
	inv.unwatch()
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
// as it arrives. The runtime API handler reads that body (pump) and passes
// each chunk on once the caller takes it, so the runtime goes at the
// caller's pace; once the caller has left, it reads on and discards.
type relayBody struct {
	inv    *invocation
	chunks chan []byte   // from pump to Read, unbuffered
	done   chan struct{} // closed by pump at the end, after its last chunk
	err    error         // why it ended: io.EOF, a *FunctionError, a broken stream
	// pending is what Read has taken from chunks and not returned yet.
	pending []byte
}

func newRelayBody(inv *invocation) *relayBody {
	return &relayBody{inv: inv, chunks: make(chan []byte), done: make(chan struct{})}
}

func (b *relayBody) Read(p []byte) (int, error) {
	inv := b.inv
	if len(b.pending) == 0 {
		if isClosed(inv.left) {
			return 0, inv.goneErr
		}
		select {
		case b.pending = <-b.chunks:
		case <-b.done:
			return 0, b.err
		case <-inv.left:
			return 0, inv.goneErr
		case <-inv.aborted:
			if isClosed(b.done) {
				return 0, b.err
			}
			return 0, inv.abortErr
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// Close ends the relay. Before the end of the body it is the caller leaving:
// the function is not told, runs on to the end of its response or its
// timeout, and the rest of its response is discarded.
func (b *relayBody) Close() error {
	b.inv.leave(ErrAbandoned)
	return nil
}

// pump reads the body of the runtime's request r to its end, handing it to
// the caller or, once the caller has left, discarding it. At the end of a
// complete body it reports the invocation to e (its last byte) and finishes
// it; it reports whether the body was complete.
func (b *relayBody) pump(e *Emulator, r *http.Request) bool {
	inv := b.inv
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if isClosed(inv.left) {
				inv.count(n, true)
			} else {
				select {
				case b.chunks <- bytes.Clone(buf[:n]):
					inv.count(n, false)
				case <-inv.left:
					inv.count(n, true)
				case <-inv.aborted:
					inv.count(n, false)
					b.err = inv.abortErr
					close(b.done)
					return false
				}
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			b.err = io.EOF
			var ferr error
			// Trailers are readable once the body has been read to its end.
			if fe := trailerError(r.Trailer); fe != nil {
				b.err, ferr = fe, fe
			}
			e.report(inv, time.Now(), ferr)
			inv.finish()
			close(b.done)
			return true
		default:
			// The runtime's connection broke: most likely its process died, which
			// the dispatcher reports in a moment with a better error.
			cause := inv.cause(time.Second)
			if cause == nil {
				cause = fmt.Errorf("lambdaemu: response stream from the runtime broke: %w", err)
			}
			b.err = cause
			close(b.done)
			return false
		}
	}
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
