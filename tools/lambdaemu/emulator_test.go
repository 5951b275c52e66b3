package lambdaemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"go.uber.org/goleak"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdaemu-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Close must leave nothing running behind.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type build struct {
	once sync.Once
	path string
	err  error
}

var builds sync.Map // test function name -> *build

// buildFunction builds testdata/<name> as a Lambda bootstrap, once per test binary.
func buildFunction(t testing.TB, name string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, new(build))
	b := v.(*build)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name, "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", b.path, "./testdata/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./testdata/%s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// start runs testdata/<name> under an emulator closed at the end of the test.
func start(t *testing.T, name string, configure func(*Function)) *Emulator {
	t.Helper()
	out := new(testutil.Buffer)
	fn := Function{
		Path:   buildFunction(t, name),
		Env:    []string{"PATH=" + os.Getenv("PATH")},
		Stdout: out,
		Stderr: out,
		Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(&fn)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e, err := Start(ctx, fn)
	if err != nil {
		t.Fatalf("Start: %v\noutput:\n%s", err, out)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("output of %s and of the emulator:\n%s", name, out)
		}
	})
	if d := e.InitDuration(); d <= 0 {
		t.Errorf("InitDuration = %v, want > 0", d)
	}
	t.Logf("%s: InitDuration %v", name, e.InitDuration())
	return e
}

// gate is what the stream function waits for between "a" and "b".
type gate struct {
	url     string
	arrived chan string // request ids of the functions waiting
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{arrived: make(chan string, 16), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.arrived <- r.URL.Query().Get("id"):
		default:
		}
		select {
		case <-g.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		g.open()
		srv.Close()
	})
	g.url = srv.URL
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitArrival waits until a function is blocked at the gate.
func (g *gate) waitArrival(t *testing.T) string {
	t.Helper()
	select {
	case id := <-g.arrived:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("the function never reached the gate")
		return ""
	}
}

func withGate(g *gate) func(*Function) {
	return func(fn *Function) { fn.Env = append(fn.Env, "GATE_URL="+g.url) }
}

// readWithin returns the result of one Read of r, failing the test if it
// takes longer than d.
func readWithin(t *testing.T, r io.Reader, d time.Duration, what string) (string, error) {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := r.Read(buf)
		ch <- result{string(buf[:n]), err}
	}()
	select {
	case res := <-ch:
		return res.s, res.err
	case <-time.After(d):
		t.Fatalf("%s: nothing read within %v", what, d)
		return "", nil
	}
}

// urlEvent is a function URL event for target, a path with an optional query.
func urlEvent(t *testing.T, method, target string) []byte {
	t.Helper()
	path, query, _ := strings.Cut(target, "?")
	b, err := json.Marshal(events.LambdaFunctionURLRequest{
		Version:        "2.0",
		RawPath:        path,
		RawQueryString: query,
		Headers:        map[string]string{"host": "lambdaemu.test"},
		RequestContext: events.LambdaFunctionURLRequestContext{
			DomainName: "lambdaemu.test",
			HTTP:       events.LambdaFunctionURLRequestContextHTTPDescription{Method: method, Path: path},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v2Event(t *testing.T, method, path string) []byte {
	t.Helper()
	b, err := json.Marshal(events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "$default",
		RawPath:  path,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			DomainName: "lambdaemu.test",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type echo struct {
	Event        json.RawMessage `json:"event"`
	RequestID    string          `json:"requestId"`
	FunctionArn  string          `json:"functionArn"`
	FunctionName string          `json:"functionName"`
	DeadlineInMs int64           `json:"deadlineInMs"`
	PID          int             `json:"pid"`
}

// invokeEcho invokes bufferedfn's echo and decodes it.
func invokeEcho(t *testing.T, e *Emulator) echo {
	t.Helper()
	resp, err := e.Invoke(t.Context(), v2Event(t, "GET", "/echo"))
	if err != nil {
		t.Fatalf("Invoke /echo: %v", err)
	}
	var r events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		t.Fatalf("decode %q: %v", resp.Body, err)
	}
	var ec echo
	if err := json.Unmarshal([]byte(r.Body), &ec); err != nil {
		t.Fatalf("decode echo %q: %v", r.Body, err)
	}
	return ec
}

func TestInvokeStreamIsProgressive(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", withGate(g))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// The function sends its prelude and "a", then blocks until the gate opens.
	resp, err := e.InvokeStream(ctx, urlEvent(t, "GET", "/stream"))
	if err != nil {
		t.Fatalf("InvokeStream did not return before the function finished: %v", err)
	}
	defer resp.Body.Close()
	if ctx.Err() != nil {
		t.Fatal("InvokeStream returned only once its context expired: the stream is buffered")
	}
	if !resp.Streamed || resp.StatusCode != http.StatusAccepted {
		t.Errorf("Streamed, StatusCode = %v, %d; want true, 202", resp.Streamed, resp.StatusCode)
	}
	if got := resp.Headers["X-Stream-Test"]; got != "yes" {
		t.Errorf("header X-Stream-Test = %q, want yes (headers %v)", got, resp.Headers)
	}
	if got := resp.Headers["Content-Type"]; got != "text/plain; charset=utf-8" {
		t.Errorf("header Content-Type = %q", got)
	}
	if len(resp.Cookies) != 1 || resp.Cookies[0] != "s=1" {
		t.Errorf("Cookies = %q, want [s=1]", resp.Cookies)
	}

	first, err := readWithin(t, resp.Body, 5*time.Second, "first chunk before the gate opens (is the stream buffered?)")
	if first != "a" || err != nil {
		t.Fatalf("first read = %q, %v; want \"a\", nil", first, err)
	}
	if id := g.waitArrival(t); id != resp.RequestID {
		t.Errorf("the function at the gate has request id %q, want %q", id, resp.RequestID)
	}
	g.open()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "b" {
		t.Fatalf("rest = %q, %v; want \"b\", nil", rest, err)
	}

	// The process serves the next invocation.
	resp2, err := e.InvokeStream(ctx, urlEvent(t, "GET", "/stream"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if err != nil || string(all) != "ab" {
		t.Fatalf("second invocation body = %q, %v; want \"ab\"", all, err)
	}
}

func TestInvokeBuffered(t *testing.T) {
	e := start(t, "bufferedfn", func(fn *Function) { fn.Timeout = 30 * time.Second })
	resp, err := e.Invoke(t.Context(), v2Event(t, "POST", "/echo"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Streamed {
		t.Error("Streamed = true for a buffered function")
	}
	var r events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		t.Fatalf("decode %q: %v", resp.Body, err)
	}
	if r.StatusCode != http.StatusCreated || r.Headers["X-Echo"] != "1" {
		t.Errorf("response = %+v", r)
	}
	var ec echo
	if err := json.Unmarshal([]byte(r.Body), &ec); err != nil {
		t.Fatal(err)
	}
	if ec.RequestID != resp.RequestID {
		t.Errorf("request id seen by the function = %q, want %q", ec.RequestID, resp.RequestID)
	}
	if ec.FunctionName != "bufferedfn" || !strings.HasSuffix(ec.FunctionArn, ":function:bufferedfn") {
		t.Errorf("function name, ARN = %q, %q", ec.FunctionName, ec.FunctionArn)
	}
	if ec.DeadlineInMs <= 25_000 || ec.DeadlineInMs > 30_000 {
		t.Errorf("time to deadline = %dms, want about 30s", ec.DeadlineInMs)
	}
}

func TestStartFailsOnInitError(t *testing.T) {
	bin := buildFunction(t, "bufferedfn")
	tests := []struct {
		mode string
		want []string
		as   any
	}{
		{"exit", []string{"exit status 3", "TABLE_NAME is not set"}, new(*ExitError)},
		{"init-error", []string{"ConfigError", "TABLE_NAME is not set"}, new(*FunctionError)},
		{"hang", []string{"did not request an invocation within 300ms"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			begin := time.Now()
			e, err := Start(t.Context(), Function{
				Path:        bin,
				Env:         []string{"BUFFEREDFN_MODE=" + tt.mode},
				InitTimeout: 300 * time.Millisecond,
			})
			if err == nil {
				e.Close()
				t.Fatal("Start succeeded")
			}
			t.Logf("Start failed after %v: %v", time.Since(begin), err)
			var ie *InitError
			if !errors.As(err, &ie) {
				t.Errorf("error %T is not an *InitError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.as != nil && !errors.As(err, tt.as) {
				t.Errorf("error does not wrap a %T", tt.as)
			}
		})
	}
	t.Run("missing executable", func(t *testing.T) {
		if _, err := Start(t.Context(), Function{Path: filepath.Join(t.TempDir(), "bootstrap")}); err == nil {
			t.Fatal("Start succeeded")
		}
	})
}

func TestFunctionErrorsAndRestart(t *testing.T) {
	e := start(t, "bufferedfn", nil)
	pid := invokeEcho(t, e).PID

	_, err := e.Invoke(t.Context(), v2Event(t, "GET", "/error"))
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Type != "errorString" || fe.Message != "handler failed on purpose" {
		t.Fatalf("Invoke /error = %v, want the function's error", err)
	}
	if got := invokeEcho(t, e).PID; got != pid {
		t.Errorf("a returned error restarted the process (pid %d -> %d)", pid, got)
	}

	// aws-lambda-go reports a panic, then exits: the next invocation starts a new process.
	_, err = e.Invoke(t.Context(), v2Event(t, "GET", "/panic"))
	if !errors.As(err, &fe) || !strings.Contains(fe.Message, "panic on purpose") {
		t.Fatalf("Invoke /panic = %v, want the panic as a function error", err)
	}
	if got := invokeEcho(t, e).PID; got == pid {
		t.Errorf("still pid %d after a panic", got)
	}
}

func TestTimeoutKillsTheProcess(t *testing.T) {
	e := start(t, "bufferedfn", func(fn *Function) { fn.Timeout = 500 * time.Millisecond })
	pid := invokeEcho(t, e).PID
	begin := time.Now()
	_, err := e.Invoke(t.Context(), v2Event(t, "GET", "/sleep"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Invoke /sleep = %v, want ErrTimeout", err)
	}
	if d := time.Since(begin); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want about 500ms", d)
	}
	if got := invokeEcho(t, e).PID; got == pid {
		t.Errorf("still pid %d after a timeout", got)
	}
}

func TestStreamErrorTrailers(t *testing.T) {
	e := start(t, "streamfn", func(fn *Function) { fn.Env = append(fn.Env, "STREAMFN_MODE=trailer") })
	resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var fe *FunctionError
	if string(body) != "partial" || !errors.As(err, &fe) || fe.Message != "database went away" || fe.Type != "errorString" {
		t.Fatalf("body, err = %q, %v; want \"partial\" and the function error from the trailers", body, err)
	}

	// Buffered, the same stream fails as a whole; the process lives on.
	if _, err := e.Invoke(t.Context(), urlEvent(t, "GET", "/")); !errors.As(err, &fe) {
		t.Fatalf("Invoke = %v, want a *FunctionError", err)
	}
}

// A panic in a lambdaurl handler kills the process. lambdaurl.Wrap's
// goroutine defers Write(nil) and Close on its pipe, which run while the
// panic unwinds: the runtime may post a complete, empty 200 response before
// the process dies. So the caller sees either that, or an *ExitError.
func TestStreamPanicKillsTheProcess(t *testing.T) {
	stderr := new(testutil.Buffer)
	e := start(t, "streamfn", func(fn *Function) { fn.Stderr = io.MultiWriter(fn.Stderr, stderr) })
	resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/panic"))
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("the panicking handler answered %d %q (read error %v) before its process died", resp.StatusCode, body, rerr)
	} else {
		var xe *ExitError
		if !errors.As(err, &xe) || !strings.Contains(xe.Stderr, "panic on purpose") {
			t.Fatalf("InvokeStream /panic = %v, want an *ExitError with the panic", err)
		}
		t.Logf("InvokeStream /panic: %v", err)
	}

	// A new process serves the next invocation.
	resp, err = e.InvokeStream(t.Context(), urlEvent(t, "GET", "/echo"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d after restart", resp.StatusCode)
	}
	if !strings.Contains(stderr.String(), "panic on purpose") {
		t.Errorf("the process did not die of the panic; stderr:\n%s", stderr)
	}
}

func TestConcurrency(t *testing.T) {
	t.Run("two processes stream at once", func(t *testing.T) {
		g := newGate(t)
		e := start(t, "streamfn", func(fn *Function) {
			withGate(g)(fn)
			fn.Concurrency = 2
		})
		var bodies []io.ReadCloser
		for i := range 2 {
			resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/stream"))
			if err != nil {
				t.Fatalf("invocation %d: %v", i, err)
			}
			defer resp.Body.Close()
			if s, err := readWithin(t, resp.Body, 5*time.Second, fmt.Sprintf("invocation %d", i)); s != "a" || err != nil {
				t.Fatalf("invocation %d: first read = %q, %v", i, s, err)
			}
			bodies = append(bodies, resp.Body)
		}
		g.open()
		for i, b := range bodies {
			if rest, err := io.ReadAll(b); string(rest) != "b" || err != nil {
				t.Errorf("invocation %d: rest = %q, %v", i, rest, err)
			}
		}
	})

	t.Run("one process queues", func(t *testing.T) {
		g := newGate(t)
		e := start(t, "streamfn", withGate(g))
		first, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/stream"))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Body.Close()
		g.waitArrival(t)

		second := make(chan error, 1)
		go func() {
			resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/stream"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			second <- err
		}()
		select {
		case err := <-second:
			t.Fatalf("the second invocation ran while the first was in progress (err %v)", err)
		case <-time.After(200 * time.Millisecond):
		}
		g.open()
		if rest, err := io.ReadAll(first.Body); string(rest) != "ab" || err != nil {
			t.Errorf("first: %q, %v", rest, err)
		}
		select {
		case err := <-second:
			if err != nil {
				t.Errorf("second: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the second invocation never ran")
		}
	})
}

// Closing a stream before its end is the client leaving: the function is
// not told. It goes on waiting at the gate, holding its process (the next
// invocation waits), and once the gate opens it writes "b", which is
// discarded, and ends normally; its process lives on.
func TestAbandonedStreamRunsOn(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", withGate(g)) // one process
	pid := echoPID(t, e)
	resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/stream"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := readWithin(t, resp.Body, 5*time.Second, "first chunk"); s != "a" || err != nil {
		t.Fatalf("first read = %q, %v", s, err)
	}
	g.waitArrival(t)
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, ErrAbandoned) {
		t.Errorf("Read after Close = %v, want ErrAbandoned", err)
	}

	next := make(chan int, 1)
	go func() {
		p, err := tryEchoPID(t.Context(), e)
		if err != nil {
			t.Errorf("the invocation after an abandoned one: %v", err)
		}
		next <- p
	}()
	select {
	case <-next:
		t.Fatal("the next invocation ran while the abandoned one was still waiting at the gate: was the function stopped?")
	case <-time.After(300 * time.Millisecond):
	}
	if _, ok := findRecord(e, resp.RequestID); ok {
		t.Fatal("the abandoned invocation is over while its function still waits at the gate")
	}
	g.open()
	select {
	case got := <-next:
		if got != pid {
			t.Errorf("pid %d after the abandoned invocation, was %d: its process was stopped", got, pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the next invocation never ran")
	}
	rec := waitRecord(t, e, resp.RequestID, 5*time.Second)
	if !rec.ClientGone || rec.Dropped != 1 || rec.Error != "" {
		t.Errorf("record %+v, want the client gone, 1 byte (\"b\") dropped, no error", rec)
	}
}

func TestCloseStopsInvocations(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", withGate(g))
	resp, err := e.InvokeStream(t.Context(), urlEvent(t, "GET", "/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	g.waitArrival(t)

	begin := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, ErrClosed) {
		t.Errorf("reading an invocation cut by Close: %v, want ErrClosed", err)
	}
	if _, err := e.Invoke(t.Context(), urlEvent(t, "GET", "/echo")); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
}
