package main

// Shared helpers for the local adapter's tests: an in-process server started
// through run, the built command as a subprocess, and an SSE reader. Tools
// the machine may lack: testutil.LookPath and testutil.Unavailable.
//
// Every request these tests make goes to 127.0.0.1 (or localhost, which the
// server's startup line prints); subprocesses get an environment without
// proxy variables so that nothing is sent elsewhere.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/logkey"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

var (
	// localDir is this package's directory, repoRoot the module root; both
	// absolute, taken before any test changes the working directory.
	localDir string
	repoRoot string
)

func TestMain(m *testing.M) {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "getwd:", err)
		os.Exit(2)
	}
	localDir = wd
	repoRoot = filepath.Dir(wd)
	code := m.Run()
	cleanupBuilt()
	os.Exit(code)
}

// goTool returns the go command that runs these tests.
func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("cannot find the go command (not on PATH, not at %s)", p)
	}
	return p
}

// subprocessEnv is the test's environment without proxy settings (so that a
// request to localhost can never be sent to a proxy), with AWS metadata
// probing disabled, and with the given overrides (KEY=value).
func subprocessEnv(overrides ...string) []string {
	drop := map[string]bool{}
	for _, kv := range overrides {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "FTP_PROXY":
			continue
		}
		if drop[k] {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
		"AWS_EC2_METADATA_DISABLED=true",
	)
	if _, err := exec.LookPath("go"); err != nil {
		env = append(env, "PATH="+filepath.Join(runtime.GOROOT(), "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return append(env, overrides...)
}

var urlRE = regexp.MustCompile(`http://localhost:([0-9]+)`)

// waitURL waits for the startup line in out and returns the printed URL and
// port.
func waitURL(t testing.TB, out *testutil.Buffer, timeout time.Duration, exited <-chan struct{}) (string, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := urlRE.FindStringSubmatch(out.String()); m != nil {
			port, _ := strconv.Atoi(m[1])
			return m[0], port
		}
		select {
		case <-exited:
			if m := urlRE.FindStringSubmatch(out.String()); m == nil {
				t.Fatalf("the server exited before printing its URL; output:\n%s", out)
			}
		case <-deadline:
			t.Fatalf("no startup line with the URL within %s; output:\n%s", timeout, out)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// testServer is the command's run function serving in-process.
type testServer struct {
	URL  string // as printed: http://localhost:<port>
	Base string // http://127.0.0.1:<port>, for the test's own requests
	Port int
	Out  *testutil.Buffer
	Log  *testutil.Buffer
}

// baseEnv is the configuration of an in-process server: memory store, a free
// port on 127.0.0.1, no rate limits, no secrets. Keys set to "" are set but
// empty, which masks any .env file; unset removes a key entirely.
func baseEnv(overrides map[string]string, unset ...string) map[string]string {
	env := map[string]string{
		"HOST":                          "127.0.0.1",
		"PORT":                          "0",
		"AWS_EC2_METADATA_DISABLED":     "true",
		"RATE_LIMIT_PER_MINUTE":         "0",
		"SESSION_RATE_LIMIT_PER_MINUTE": "0",
		"MAX_STREAMS_PER_IP":            "0",
		"WEBHOOK_SECRET":                "",
		"WEBHOOK_SIGNING_SECRET":        "",
		"DYNAMODB_ENDPOINT":             "",
	}
	for k, v := range overrides {
		env[k] = v
	}
	for _, k := range unset {
		delete(env, k)
	}
	return env
}

func mapLookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// startServer runs the command in-process until the test ends, then stops
// it and checks that run returned nil.
func startServer(t testing.TB, env map[string]string) *testServer {
	t.Helper()
	return startServerWith(t, env, adapterOptions{})
}

// startServerWith is startServer with options beyond the environment.
func startServerWith(t testing.TB, env map[string]string, opts adapterOptions) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := new(testutil.Buffer), new(testutil.Buffer)
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- runWith(ctx, mapLookup(env), out, logs, opts)
		close(exited)
	}()
	url, port := waitURL(t, out, 10*time.Second, exited)
	t.Cleanup(func() {
		stopping := time.Now()
		cancel()
		defer func() {
			if d := time.Since(stopping); d > time.Second {
				t.Logf("note: the server took %s to stop", d.Round(time.Millisecond))
			}
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("run did not return within 10s of cancel")
		}
		if t.Failed() {
			t.Logf("server stdout:\n%s\nserver log:\n%s", out.String(), logs.String())
		}
	})
	return &testServer{URL: url, Base: "http://127.0.0.1:" + strconv.Itoa(port), Port: port, Out: out, Log: logs}
}

// postResult is the body of a POST /api/webhook answer.
type postResult struct {
	Success   bool   `json:"success"`
	MessageID string `json:"messageId"`
	Timestamp int64  `json:"timestamp"`
	Error     string `json:"error"`
}

// post sends a webhook message with net/http and returns the status and body.
func post(t testing.TB, base string, body any, header map[string]string) (int, postResult) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/webhook", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s/api/webhook: %v", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read POST answer: %v", err)
	}
	var res postResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("POST answer %d is not JSON: %v: %q", resp.StatusCode, err, raw)
	}
	return resp.StatusCode, res
}

// mustPost posts a message that must be accepted and returns its messageId.
func mustPost(t testing.TB, base string, body any, header map[string]string) string {
	t.Helper()
	code, res := post(t, base, body, header)
	if code != http.StatusOK || !res.Success || res.MessageID == "" {
		t.Fatalf("POST %v: got %d %+v, want 200 success with a messageId", body, code, res)
	}
	return res.MessageID
}

// sseEvent is one event of the stream: its id and decoded data.
type sseEvent struct {
	ID   string
	Data map[string]any
}

// sseStream reads one open stream in the background.
type sseStream struct {
	events chan sseEvent
	done   chan struct{}
	err    error // the read error that ended the stream (io.EOF when clean)
	cancel context.CancelFunc
}

// openStream opens GET /api/webhook/stream (query may be "") and waits for
// its "connected" event.
func openStream(t testing.TB, base, query string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := base + "/api/webhook/stream"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// A transport of its own: the stream's connection is not shared.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %q, want 200 text/event-stream", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{events: make(chan sseEvent, 256), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		rd := sse.NewReader(resp.Body)
		for {
			e, err := rd.Next()
			if err != nil {
				s.err = err
				return
			}
			ev := sseEvent{ID: e.ID}
			if json.Unmarshal([]byte(e.Data), &ev.Data) != nil {
				continue
			}
			select {
			case s.events <- ev:
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	ev := s.next(t, 10*time.Second)
	if ev.Data["type"] != "connected" {
		t.Fatalf("first event of %s: %v, want type connected", u, ev.Data)
	}
	return s
}

// next returns the next event, failing the test after timeout.
func (s *sseStream) next(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		// Events read before the end are still queued.
		select {
		case ev := <-s.events:
			return ev
		default:
		}
		t.Fatalf("stream ended (%v) while waiting for an event", s.err)
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
	}
	return sseEvent{}
}

// waitMessage reads events until a webhook_message with the id arrives.
func (s *sseStream) waitMessage(t testing.TB, id string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("message %s did not reach the stream within %s", id, timeout)
		}
		ev := s.next(t, left)
		if ev.Data["type"] == "webhook_message" && ev.Data["id"] == id {
			return ev
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHealthy polls GET /api/webhook until it answers 200.
func waitHealthy(t testing.TB, base string, timeout time.Duration, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("the server exited before it became healthy (last: %s)", last)
		default:
		}
		resp, err := client.Get(base + "/api/webhook")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s/api/webhook not 200 within %s (last: %s)", base, timeout, last)
}

// The command, built once per test binary for the tests that need a real
// process (signals).
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func builtCommand(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "webhook-relay-local-test-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "webhook-relay-local")
		cmd := exec.Command(goTool(t), "build", "-o", built.path, ".")
		cmd.Dir = localDir
		cmd.Env = subprocessEnv()
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build ./local: %v\n%s", built.err, built.out)
	}
	return built.path
}

func cleanupBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// process is a started subprocess whose output is collected.
type process struct {
	cmd    *exec.Cmd
	out    *testutil.Buffer
	errOut *testutil.Buffer
	exited chan struct{}
	err    error // Wait's result, valid after exited is closed
}

// startProcess starts cmd; at the end of the test it is killed if it still
// runs, and its output is logged if the test failed. Cleanups the caller
// registers afterwards (a graceful stop) run before that.
func startProcess(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, out: new(testutil.Buffer), errOut: new(testutil.Buffer), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), p.out, p.errOut)
		}
	})
	return p
}

// wait waits for the process to exit.
func (p *process) wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		return errTimeout
	}
}

var errTimeout = errors.New("timed out")

func itoa(n int) string { return strconv.Itoa(n) }

// streamLog is what the relay's log says of one session's streams: the
// connection ids opened (in order), whether each open resumed, and the
// close requests (of any stream).
type streamLog struct {
	opened  []string
	resumed []bool
	closeRq map[string]string // connection id -> where the close found it
}

func readStreamLog(srv *testServer, sessionID string) streamLog {
	l := streamLog{closeRq: map[string]string{}}
	for _, line := range strings.Split(srv.Log.String(), "\n") {
		var e struct {
			Msg          string `json:"msg"`
			Session      string `json:"session"`   // a keyed hash while tokens are off
			SessionID    string `json:"sessionId"` // with tokens on
			ConnectionID string `json:"connectionId"`
			Resumed      bool   `json:"resumed"`
			Found        string `json:"found"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "stream opened" && (e.Session == logkey.Session("", sessionID) || e.SessionID == sessionID):
			l.opened = append(l.opened, e.ConnectionID)
			l.resumed = append(l.resumed, e.Resumed)
		case e.Msg == "stream close requested":
			l.closeRq[e.ConnectionID] = e.Found
		}
	}
	return l
}

// resumedCount is how many of the opens resumed.
func (l streamLog) resumedCount() int {
	n := 0
	for _, r := range l.resumed {
		if r {
			n++
		}
	}
	return n
}
