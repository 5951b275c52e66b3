package lambdaemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Runtime API (2018-06-01) and Extensions API (2020-01-01) names.
const (
	headerRequestID    = "Lambda-Runtime-Aws-Request-Id"
	headerDeadlineMS   = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN  = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID      = "Lambda-Runtime-Trace-Id"
	headerResponseMode = "Lambda-Runtime-Function-Response-Mode"
	headerErrorType    = "Lambda-Runtime-Function-Error-Type"
	trailerErrorType   = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody   = "Lambda-Runtime-Function-Error-Body"
	headerExtensionID  = "Lambda-Extension-Identifier"
	maxErrorPayload    = 1 << 20
)

// instance is one execution environment: a runtime API server of its own
// and, at most one at a time, a process of the function.
type instance struct {
	e         *Emulator
	addr      string // host:port of the runtime API, for AWS_LAMBDA_RUNTIME_API
	srv       *http.Server
	serveDone chan struct{}
	deliver   chan *invocation // to the runtime's pending GET .../next

	mu   sync.Mutex
	proc *process    // the current process, nil before the first start or after a reap
	cur  *invocation // the invocation last delivered to the runtime
}

type process struct {
	cmd          *exec.Cmd
	started      time.Time
	ready        chan struct{} // closed by the first GET .../next
	readyOnce    sync.Once
	readyAt      time.Time
	initDuration time.Duration
	initErr      chan *FunctionError // capacity 1: POST .../init/error
	exited       chan struct{}
	waitErr      error // valid once exited is closed
	stderr       tailBuffer
	served       atomic.Bool // it has got an invocation
}

func (p *process) markReady() {
	p.readyOnce.Do(func() {
		p.readyAt = time.Now()
		close(p.ready)
	})
}

// exitError describes the exit of p; call it once p.exited is closed.
func (p *process) exitError() *ExitError {
	err := p.waitErr
	if err == nil {
		err = errors.New("exit status 0")
	}
	return &ExitError{Err: err, Stderr: p.stderr.String()}
}

func (e *Emulator) newInstance() (*instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lambdaemu: runtime API listener: %w", err)
	}
	in := &instance{
		e:         e,
		addr:      ln.Addr().String(),
		serveDone: make(chan struct{}),
		deliver:   make(chan *invocation),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", in.handleNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", in.handleResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", in.handleError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", in.handleInitError)
	// aws-lambda-go registers an internal extension when the function uses
	// lambda.WithEnableSIGTERM; Close sends SIGTERM either way.
	mux.HandleFunc("POST /2020-01-01/extension/register", in.handleExtensionRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", in.handleExtensionNext)
	in.srv = &http.Server{
		Handler:  mux,
		ErrorLog: slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(in.serveDone)
		_ = in.srv.Serve(ln)
	}()
	return in, nil
}

func (in *instance) currentProc() *process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.proc
}

// reap forgets p, which has exited.
func (in *instance) reap(p *process) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.proc == p {
		in.proc = nil
	}
}

func (in *instance) kill(p *process) {
	_ = p.cmd.Process.Kill()
	<-p.exited
	in.reap(p)
}

// env is the environment of a process: Function.Env plus the variables the
// Lambda provided runtimes set.
func (in *instance) env() []string {
	fn := in.e.fn
	env := make([]string, 0, len(fn.Env)+16)
	for _, kv := range fn.Env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "_LAMBDA_SERVER_PORT", // would select aws-lambda-go's go1.x RPC mode
			"AWS_LAMBDA_MAX_CONCURRENCY": // would run several invocations per process
			continue
		}
		env = append(env, kv)
	}
	setDefault := func(k, v string) {
		if lookupEnv(fn.Env, k) == "" {
			env = append(env, k+"="+v)
		}
	}
	region := envRegion(fn.Env)
	setDefault("AWS_REGION", region)
	setDefault("AWS_DEFAULT_REGION", region)
	setDefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
	return append(env,
		"AWS_LAMBDA_RUNTIME_API="+in.addr,
		"AWS_LAMBDA_FUNCTION_NAME="+fn.Name,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME="+time.Now().UTC().Format("2006/01/02")+"/[$LATEST]"+strings.ReplaceAll(newUUID(), "-", ""),
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"LAMBDA_TASK_ROOT="+fn.Dir,
		"_HANDLER=bootstrap",
	)
}

// startProcess starts a process and waits for the end of its init phase.
func (in *instance) startProcess(ctx context.Context) (*process, error) {
	fn := in.e.fn
	cmd := exec.Command(fn.Path, fn.Args...)
	cmd.Dir = fn.Dir
	cmd.Env = in.env()
	p := &process{
		cmd:     cmd,
		ready:   make(chan struct{}),
		initErr: make(chan *FunctionError, 1),
		exited:  make(chan struct{}),
	}
	cmd.Stdout = fn.Stdout
	cmd.Stderr = io.MultiWriter(fn.Stderr, &p.stderr)
	cmd.WaitDelay = time.Second
	setProcAttr(cmd)

	in.mu.Lock()
	in.proc = p
	in.mu.Unlock()
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		in.mu.Lock()
		in.proc = nil
		in.mu.Unlock()
		return nil, &InitError{Function: fn.Name, Err: err}
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	timer := time.NewTimer(fn.InitTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-p.ready:
		p.initDuration = p.readyAt.Sub(p.started)
		in.e.log.Info("init", "duration", p.initDuration, "pid", cmd.Process.Pid)
		return p, nil
	case fe := <-p.initErr:
		err = fe
	case <-p.exited:
		select {
		case fe := <-p.initErr: // it reported, then exited
			err = fe
		default:
			err = p.exitError()
		}
	case <-timer.C:
		err = fmt.Errorf("the runtime did not request an invocation within %v; stderr ends with:\n%s", fn.InitTimeout, p.stderr.String())
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-in.e.done:
		err = ErrClosed
	}
	in.kill(p)
	in.e.log.Error("init failed", "err", err)
	return nil, &InitError{Function: fn.Name, Err: err}
}

// liveProcess returns the running process, starting one if needed (a cold start).
func (in *instance) liveProcess(ctx context.Context) (*process, error) {
	p := in.currentProc()
	if p != nil && !isClosed(p.exited) {
		return p, nil
	}
	if p != nil {
		in.reap(p)
	}
	return in.startProcess(ctx)
}

// run takes inv through the runtime: delivery to GET .../next, then the
// wait for its end, enforcing the deadline and killing the process of an
// invocation that cannot end normally. The caller leaving does not end an
// invocation the runtime has got (see the package documentation).
func (in *instance) run(inv *invocation) {
	e := in.e
	var p *process
	for attempt := 0; ; attempt++ {
		if isClosed(inv.left) {
			inv.abort(inv.goneErr) // it never reached the function
			return
		}
		// A cold start goes on when the caller leaves meanwhile, as on Lambda:
		// the next invocation finds the process warm.
		var err error
		if p, err = in.liveProcess(context.Background()); err != nil {
			inv.abort(err)
			return
		}
		inv.deadline = time.Now().Add(e.fn.Timeout)
		select {
		case in.deliver <- inv:
		case <-p.exited:
			// It exited after its previous invocation (e.g. after reporting a
			// panic): start a new one, once.
			in.reap(p)
			if attempt == 0 {
				continue
			}
			inv.abort(p.exitError())
			return
		case <-inv.aborted:
			return
		case <-inv.left:
			inv.abort(inv.goneErr)
			return
		case <-e.done:
			inv.abort(ErrClosed)
			return
		}
		break
	}

	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	var err error
	select {
	case <-inv.finished:
		return
	case <-p.exited:
		err = p.exitError()
	case <-timer.C:
		err = fmt.Errorf("%w after %.2f seconds", ErrTimeout, e.fn.Timeout.Seconds())
	case <-inv.aborted:
		err = inv.abortErr
	case <-e.done:
		err = ErrClosed
	}
	if isClosed(inv.finished) {
		return
	}
	e.report(inv, time.Now(), err)
	inv.abort(err)
	if errors.Is(err, ErrClosed) {
		return // Close stops the processes
	}
	e.log.Warn("invocation stopped; killing its process", "requestId", inv.id, "err", err)
	in.kill(p)
}

// shutdown stops the process (SIGTERM, then SIGKILL) and the server.
func (in *instance) shutdown() {
	if p := in.currentProc(); p != nil {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = p.cmd.Process.Kill()
		}
		t := time.NewTimer(in.e.fn.ShutdownTimeout)
		select {
		case <-p.exited:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		t.Stop()
		in.reap(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := in.srv.Shutdown(ctx); err != nil {
		_ = in.srv.Close()
	}
	<-in.serveDone
}

func (in *instance) handleNext(w http.ResponseWriter, r *http.Request) {
	p := in.currentProc()
	if p != nil {
		p.markReady()
	}
	in.mu.Lock()
	prev := in.cur
	in.mu.Unlock()
	if prev != nil && !isClosed(prev.responded) && !isClosed(prev.aborted) {
		prev.abort(errors.New("lambdaemu: the runtime asked for the next invocation without answering this one"))
	}
	select {
	case inv := <-in.deliver:
		in.mu.Lock()
		in.cur = inv
		in.mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(headerRequestID, inv.id)
		h.Set(headerDeadlineMS, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set(headerFunctionARN, in.e.arn)
		h.Set(headerTraceID, inv.traceID)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.payload)
		// The runtime cannot act on it before this handler returns.
		var init time.Duration
		if p != nil && !p.served.Swap(true) {
			init = p.initDuration
		}
		inv.started(time.Now(), init)
	case <-r.Context().Done():
	case <-in.e.done:
		// Keep the runtime waiting: Close is about to stop it.
		<-r.Context().Done()
	}
}

// claim returns the in-flight invocation with the given id, marking it as
// answered, or writes an error.
func (in *instance) claim(w http.ResponseWriter, id string) (*invocation, bool) {
	in.mu.Lock()
	inv := in.cur
	in.mu.Unlock()
	if inv == nil || inv.id != id {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestID", "unknown request id "+strconv.Quote(id))
		return nil, false
	}
	first := false
	inv.respOnce.Do(func() {
		first = true
		close(inv.responded)
	})
	if !first {
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", "invocation "+id+" was already answered")
		return nil, false
	}
	return inv, true
}

// handleResponse relays the response body to the caller while it arrives,
// or reads and discards it once the caller has left; it answers the runtime
// at the end of the body.
func (in *instance) handleResponse(w http.ResponseWriter, r *http.Request) {
	inv, ok := in.claim(w, r.PathValue("id"))
	if !ok {
		return
	}
	body := newRelayBody(inv)
	raw := &rawResponse{
		contentType: r.Header.Get("Content-Type"),
		mode:        r.Header.Get(headerResponseMode),
		body:        body,
	}
	if !inv.answer(outcome{resp: raw}) && isClosed(inv.aborted) {
		// Timed out, crashed or closing: its process is being stopped.
		panic(http.ErrAbortHandler)
	}
	// Answered, or the caller has left and the body goes nowhere: either way
	// the function writes on, unaware.
	if body.pump(in.e, r) {
		writeAccepted(w)
		return
	}
	// Timed out, broken or closing: cut the runtime off mid-stream. Its
	// process is being stopped.
	panic(http.ErrAbortHandler)
}

func (in *instance) handleError(w http.ResponseWriter, r *http.Request) {
	inv, ok := in.claim(w, r.PathValue("id"))
	if !ok {
		return
	}
	payload, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorPayload))
	fe := parseFunctionError(payload, r.Header.Get(headerErrorType))
	in.e.log.Warn("function error", "requestId", inv.id, "errorType", fe.Type, "errorMessage", fe.Message)
	in.e.report(inv, time.Now(), fe)
	inv.answer(outcome{err: fe})
	inv.finish()
	writeAccepted(w)
}

func (in *instance) handleInitError(w http.ResponseWriter, r *http.Request) {
	payload, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorPayload))
	fe := parseFunctionError(payload, r.Header.Get(headerErrorType))
	if p := in.currentProc(); p != nil {
		select {
		case p.initErr <- fe:
		default:
		}
	}
	writeAccepted(w)
}

func (in *instance) handleExtensionRegister(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerExtensionID, newUUID())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"functionName":    in.e.fn.Name,
		"functionVersion": "$LATEST",
		"handler":         "bootstrap",
	})
}

// handleExtensionNext never returns an event: the internal extension of
// aws-lambda-go registers for none.
func (in *instance) handleExtensionNext(w http.ResponseWriter, r *http.Request) {
	<-r.Context().Done()
}

func writeAccepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

func writeAPIError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorType": typ, "errorMessage": msg})
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*tailSize {
		b.buf = append(b.buf[:0:0], b.buf[len(b.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if len(s) > tailSize {
		s = s[len(s)-tailSize:]
	}
	return strings.TrimSpace(string(s))
}
