//go:build unix

// Package functions_test runs the real Lambda bootstraps of functions/webhook
// and functions/stream, built for this machine, against DynamoDB Local: the
// webhook one under the AWS Lambda Runtime Interface Emulator with API
// Gateway events of both payload versions, the stream one under
// tools/lambdaemu, whose function URL relays the response stream as it is
// written (the RIE buffers streams).
package functions_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

// The AWS Lambda Runtime Interface Emulator, pinned (docs/design.md, "Real
// components").
const (
	riePackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

// TestRealBinaries builds both bootstraps for this machine once, then runs
// each as Lambda runs it. The subtests run in parallel.
func TestRealBinaries(t *testing.T) {
	endpoint := dynamotest.Endpoint(t)

	// Installing the RIE (first run only) overlaps the build.
	type rieResult struct {
		path string
		err  error
	}
	rieCh := make(chan rieResult, 1)
	go func() {
		p, err := ensureRIE()
		rieCh <- rieResult{p, err}
	}()

	dir := t.TempDir()
	start := time.Now()
	// The flags of `make build` but for this machine, and without -trimpath
	// and CGO_ENABLED=0: with the test's own settings the build reuses the
	// packages `go vet` and `go test` compiled, instead of compiling the AWS
	// SDK again (minutes on a cold CI machine). The wiring, the runtime
	// protocol and the handlers are the same code.
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-ldflags=-s -w",
		"-o", filepath.Join(dir, "bin")+string(filepath.Separator), "./functions/webhook", "./functions/stream")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bootstraps := map[string]string{}
	for _, name := range []string{"webhook", "stream"} {
		p := filepath.Join(dir, name, "bootstrap")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "bin", name), p); err != nil {
			t.Fatal(err)
		}
		bootstraps[name] = p
	}
	t.Logf("built both bootstraps for %s/%s in %v", runtime.GOOS, runtime.GOARCH, time.Since(start).Round(time.Millisecond))

	rie := sync.OnceValues(func() (string, error) { r := <-rieCh; return r.path, r.err })
	needRIE := func(t *testing.T) string {
		p, err := rie()
		if err != nil {
			testutil.Unavailable(t, "AWS Lambda RIE %s@%s cannot be installed: %v", riePackage, rieVersion, err)
		}
		return p
	}
	t.Run("WebhookUnderRIE", func(t *testing.T) {
		t.Parallel()
		testWebhookUnderRIE(t, endpoint, needRIE(t), bootstraps["webhook"])
	})
	t.Run("OneOriginUnderEmulator", func(t *testing.T) {
		t.Parallel()
		testOneOrigin(t, endpoint, bootstraps)
	})
	t.Run("SamplesUnderRIE", func(t *testing.T) {
		t.Parallel()
		testSamplesUnderRIE(t, endpoint, needRIE(t), bootstraps)
	})
	// The stream function behind each front of the template's
	// StreamEndpoint parameter. Behind the REST API, streams that send
	// nothing for restIdle are cut: the heartbeats (1s) keep this one alive.
	const restIdle = 2500 * time.Millisecond
	for _, front := range []struct {
		name    string
		handler func(*lambdaemu.Emulator) http.Handler
	}{
		{"FunctionUrl", (*lambdaemu.Emulator).FunctionURLHandler},
		{"RestApi", func(e *lambdaemu.Emulator) http.Handler { return e.APIGatewayV1StreamHandler(restIdle) }},
	} {
		t.Run("StreamUnderEmulator/"+front.name, func(t *testing.T) {
			t.Parallel()
			testStreamUnderEmulator(t, endpoint, bootstraps["stream"], front.handler)
		})
		t.Run("StreamCloseUnderEmulator/"+front.name, func(t *testing.T) {
			t.Parallel()
			testStreamCloseUnderEmulator(t, endpoint, bootstraps["stream"], front.handler)
		})
	}
}

// ---- environment -------------------------------------------------------------

// functionEnv is the whole environment of a function process: DynamoDB Local,
// static credentials (DynamoDB Local keeps one database per key and region:
// the same as dynamotest.Client), never instance metadata, no shared AWS
// config files.
func functionEnv(endpoint, table string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_ACCESS_KEY_ID=" + envOr("AWS_ACCESS_KEY_ID", "dummy"),
		"AWS_SECRET_ACCESS_KEY=" + envOr("AWS_SECRET_ACCESS_KEY", "dummy"),
		"AWS_REGION=" + dynamotest.Region(),
		"DYNAMODB_ENDPOINT=" + endpoint,
		"TABLE_NAME=" + table,
	}
	if tok := os.Getenv("AWS_SESSION_TOKEN"); tok != "" {
		env = append(env, "AWS_SESSION_TOKEN="+tok)
	}
	return append(env, extra...)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// newTable creates a table for one test and opens a store on it (a writer
// beside the function, and a way to see what the function stored).
func newTable(t *testing.T, endpoint string) (string, *dynamostore.Store) {
	t.Helper()
	client := dynamotest.Client(t, endpoint)
	table := dynamotest.TableName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := dynamostore.CreateTable(ctx, client, table); err != nil {
		t.Fatalf("create table: %v", err)
	}
	st, err := dynamostore.New(ctx, client, table, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return table, st
}

// ---- the RIE -----------------------------------------------------------------

// ensureRIE returns the pinned RIE binary, installing it into the tool cache
// with `go install` on first use. Concurrent test processes each install
// into a directory of their own and rename the result into place.
func ensureRIE() (string, error) {
	root, err := testutil.CacheRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	path := filepath.Join(bin, "aws-lambda-rie@"+rieVersion)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(bin, ".install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := func(extraEnv ...string) error {
		cmd := exec.CommandContext(ctx, "go", "install", riePackage+"@"+rieVersion)
		cmd.Dir = tmp // outside this module: install the pinned version as is
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH, "GOFLAGS=")
		cmd.Env = append(cmd.Env, extraEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install %s@%s: %v\n%s", riePackage, rieVersion, err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		// Offline, with the module already downloaded: the module cache is
		// a module proxy of its own (its checksums were verified when the
		// modules were downloaded).
		out, gerr := exec.Command("go", "env", "GOMODCACHE").Output()
		dl := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
		if gerr != nil || strings.TrimSpace(string(out)) == "" {
			return "", err
		}
		if err2 := install("GOPROXY=file://"+filepath.ToSlash(dl), "GOSUMDB=off"); err2 != nil {
			return "", fmt.Errorf("%v\nfrom the module cache: %v", err, err2)
		}
	}
	if err := os.Rename(filepath.Join(tmp, "aws-lambda-rie"), path); err != nil {
		return "", err
	}
	return path, nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// rie is one RIE process running one function.
type rie struct {
	url string
	out *testutil.Buffer
	mu  sync.Mutex // the RIE crashes on concurrent invokes
}

// startRIE runs bootstrap under the RIE, with its invoke endpoint and its
// runtime API each on a port of their own on 127.0.0.1. A port found free
// can be taken by a parallel test before the RIE binds it: that start is
// tried again on new ports.
func startRIE(t *testing.T, rieBin, bootstrap string, env []string) *rie {
	t.Helper()
	for attempt := 1; ; attempt++ {
		r, out := tryStartRIE(t, rieBin, bootstrap, env)
		if r != nil {
			return r
		}
		if attempt == 3 || !strings.Contains(out, "address already in use") {
			t.Fatalf("RIE exited at start (attempt %d):\n%s", attempt, out)
		}
	}
}

// tryStartRIE is one start; it returns nil and the output when the RIE
// exited at once.
func tryStartRIE(t *testing.T, rieBin, bootstrap string, env []string) (*rie, string) {
	t.Helper()
	invokePort, apiPort := freePort(t), freePort(t)
	out := &testutil.Buffer{}
	cmd := exec.Command(rieBin,
		"--runtime-interface-emulator-address", "127.0.0.1:"+invokePort,
		"--runtime-api-address", "127.0.0.1:"+apiPort,
		bootstrap)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = append(env, "AWS_LAMBDA_FUNCTION_TIMEOUT=30", "AWS_LAMBDA_FUNCTION_NAME=WebhookFunction")
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: the RIE and the bootstrap it starts are killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start RIE: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("RIE and function output:\n%s", out)
		}
	})
	addr := "127.0.0.1:" + invokePort
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return nil, out.String()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RIE not listening on %s after 15s:\n%s", addr, out)
		}
	}
	return &rie{url: "http://" + addr + "/2015-03-31/functions/function/invocations", out: out}, ""
}

// invoke sends event and returns the function's response payload.
func (r *rie) invoke(t *testing.T, event []byte) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(event))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %v %s", resp.StatusCode, err, body)
	}
	return body
}

// initReport is the RIE's log line for the end of the init phase: from
// starting the bootstrap to its first request for an invocation (/next).
// (The "Init Duration" of its REPORT line times only the start of the init.)
var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// initDuration is the first init phase's duration.
func (r *rie) initDuration(t *testing.T) time.Duration {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := initReport.FindStringSubmatch(r.out.String()); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			return time.Duration(ms * float64(time.Millisecond)).Round(10 * time.Microsecond)
		}
	}
	t.Fatalf("no INIT REPORT in the RIE's log:\n%s", r.out)
	return 0
}

// ---- the webhook function under the RIE ------------------------------------------

func testWebhookUnderRIE(t *testing.T, endpoint, rieBin, bootstrap string) {
	table, st := newTable(t, endpoint)
	env := functionEnv(endpoint, table, "RATE_LIMIT_PER_MINUTE=0", "SESSION_RATE_LIMIT_PER_MINUTE=0", "MAX_STREAMS_PER_IP=0")
	r := startRIE(t, rieBin, bootstrap, env)

	partition := store.Partition(testutil.FixtureSession)
	type stored struct{ id, text string }
	var want []stored
	for i, tt := range testutil.GatewayCases {
		g := testutil.ParseGatewayResponse(t, r.invoke(t, testutil.Event(t, tt.Event)))
		if i == 0 {
			t.Logf("WebhookFunction init under the RIE (process start to first /next): %v", r.initDuration(t))
		}
		if g.StatusCode != tt.Status {
			t.Errorf("%s: status %d, want %d; body %s", tt.Event, g.StatusCode, tt.Status, g.Body)
			continue
		}
		if ct := g.Header("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", tt.Event, ct)
		}
		var body struct {
			Success           *bool  `json:"success"`
			MessageID         string `json:"messageId"`
			Error             string `json:"error"`
			Status            string `json:"status"`
			ActiveConnections *int   `json:"activeConnections"`
		}
		if err := json.Unmarshal([]byte(g.Body), &body); err != nil {
			t.Errorf("%s: body %q: %v", tt.Event, g.Body, err)
			continue
		}
		switch {
		case tt.Health:
			if body.Status != "ok" || body.ActiveConnections == nil || *body.ActiveConnections != 0 {
				t.Errorf("%s: health %s", tt.Event, g.Body)
			}
		case tt.Stored != "":
			if body.Success == nil || !*body.Success || body.MessageID == "" {
				t.Errorf("%s: body %s", tt.Event, g.Body)
			}
			want = append(want, stored{body.MessageID, tt.Stored})
		default:
			if body.Success == nil || *body.Success || !strings.Contains(body.Error, tt.ErrHas) {
				t.Errorf("%s: body %s, want an error about %q", tt.Event, g.Body, tt.ErrHas)
			}
		}
	}

	// What the function stored, read back from the table: the accepted
	// messages in order, under consecutive numbers (bad input took none).
	ctx := t.Context()
	entries, err := st.Read(ctx, partition, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []stored
	for _, e := range entries {
		got = append(got, stored{e.Message.ID, e.Message.Text})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("table holds %v, want %v", got, want)
	}
	if head, err := st.Head(ctx, partition); err != nil || head.Seq != uint64(len(want)) {
		t.Errorf("head %+v %v, want %d", head, err, len(want))
	}

	// The same binary under lambdaemu, to measure its init the same way as
	// the stream function's.
	e, err := lambdaemu.Start(ctx, lambdaemu.Function{Path: bootstrap, Env: env, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("lambdaemu: %v", err)
	}
	defer e.Close()
	t.Logf("WebhookFunction init under lambdaemu (process start to first /next): %v", e.InitDuration())
	srv := httptest.NewServer(e.APIGatewayV2Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/webhook")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"ok"`) {
		t.Errorf("health through lambdaemu: %d %s", resp.StatusCode, b)
	}
}

// ---- the RestApi shape: one origin ---------------------------------------------------

// testOneOrigin serves both real bootstraps as the template's RestApi shape
// does, on one origin: the chat page at / from the webhook function, a POST
// (gzipped, which the REST API passes as a base64 body) and the errors of
// unknown paths and methods as the relay's JSON, and the stream next to the
// page, which gets the message.
func testOneOrigin(t *testing.T, endpoint string, bootstraps map[string]string) {
	table, _ := newTable(t, endpoint)
	env := functionEnv(endpoint, table, "RATE_LIMIT_PER_MINUTE=0", "SESSION_RATE_LIMIT_PER_MINUTE=0", "HEARTBEAT_INTERVAL=1s", "POLL_INTERVAL=200ms")
	start := func(name string) *lambdaemu.Emulator {
		// Two processes: the open stream holds one (as on Lambda, an instance per stream).
		e, err := lambdaemu.Start(t.Context(), lambdaemu.Function{Path: bootstraps[name], Env: env, Timeout: 30 * time.Second, Concurrency: 2})
		if err != nil {
			t.Fatalf("lambdaemu %s: %v", name, err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	webhook, stream := start("webhook"), start("stream")
	mux := http.NewServeMux()
	mux.Handle("/", webhook.APIGatewayV1Handler())
	mux.Handle("/api/webhook/stream", stream.APIGatewayV1StreamHandler(0))
	mux.Handle("/api/webhook/stream/", stream.APIGatewayV1StreamHandler(0))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self';") || !bytes.Contains(page, []byte("EventSource")) {
		t.Fatalf("GET /: %d %v, %d bytes; want the chat page, its stream on its own origin", resp.StatusCode, resp.Header, len(page))
	}

	streamResp, events, _ := openStream(t, srv.URL+"/api/webhook/stream?sessionId=one", "")
	defer streamResp.Body.Close() // before srv.Close, which waits for open requests
	if _, m := nextEvent(t, events, 10*time.Second); m.Type != "connected" {
		t.Fatalf("first event %+v, want connected", m)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"message":"one origin","sessionId":"one"}`))
	zw.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/webhook", &gz)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"success":true`)) {
		t.Fatalf("gzipped POST: %d %s", resp.StatusCode, body)
	}
	if _, m := nextEvent(t, events, 10*time.Second); m.Type != "webhook_message" || m.Message != "one origin" {
		t.Errorf("event %+v, want the message", m)
	}

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/nowhere", http.StatusNotFound},
		{http.MethodDelete, "/api/webhook", http.StatusMethodNotAllowed},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/webhook/stream/nowhere", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !bytes.Contains(body, []byte(`"success":false`)) {
			t.Errorf("%s %s: %d %q %s, want %d with the relay's JSON error", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status)
		}
	}
}

// ---- the sam local samples under the RIE -------------------------------------------

// samLocalEnv is events/env.json: the variables `sam local invoke --env-vars`
// sets, per function.
func samLocalEnv(t *testing.T) map[string]map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../events/env.json")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]map[string]string
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("events/env.json: %v", err)
	}
	return env
}

// samLocal is the environment of a function under the RIE as sam local
// gives it with events/env.json, but on this test's DynamoDB Local and
// table; drop names variables left out.
func samLocal(t *testing.T, fn, endpoint, table string, drop ...string) []string {
	t.Helper()
	vars, ok := samLocalEnv(t)[fn]
	if !ok {
		t.Fatalf("events/env.json has nothing for %s", fn)
	}
	var extra []string
	for k, v := range vars {
		switch {
		case k == "DYNAMODB_ENDPOINT" || k == "TABLE_NAME":
			if v == "" {
				t.Errorf("events/env.json: %s.%s is empty", fn, k)
			}
		case !slices.Contains(drop, k):
			extra = append(extra, k+"="+v)
		}
	}
	return functionEnv(endpoint, table, extra...)
}

// webhookSamples are the sam local invoke events of events/ for the webhook
// function (docs/deploy.md, "SAM local"), and its answers with
// events/env.json (which sets WEBHOOK_SECRET) and without the secret.
var webhookSamples = []struct {
	event  string
	secret bool // WEBHOOK_SECRET as events/env.json sets it
	status int
	stored string // the text stored for session sam-local
	health bool
}{
	{event: "webhook-post-secret.json", secret: true, status: 200, stored: "Hello from sam local invoke, with the secret"},
	{event: "webhook-post.json", secret: true, status: 401},
	{event: "webhook-health.json", secret: true, status: 200, health: true},
	{event: "webhook-post.json", secret: false, status: 200, stored: "Hello from sam local invoke"},
	{event: "webhook-post-secret.json", secret: false, status: 200, stored: "Hello from sam local invoke, with the secret"},
}

// streamSamples are its stream events, one per front of the template.
var streamSamples = []string{"stream-get.json", "stream-get-rest.json"}

// testSamplesUnderRIE feeds the sample events to the real bootstraps under
// the RIE, as sam local invoke does, so that they cannot rot: the webhook
// ones store and refuse as documented, and each stream one, ended by plan,
// comes back (buffered, as from sam local) as the HTTP integration stream
// with the connected event and the replay of what the webhook ones stored.
func testSamplesUnderRIE(t *testing.T, endpoint, rieBin string, bootstraps map[string]string) {
	table, st := newTable(t, endpoint)
	withSecret := startRIE(t, rieBin, bootstraps["webhook"], samLocal(t, "WebhookFunction", endpoint, table))
	without := startRIE(t, rieBin, bootstraps["webhook"], samLocal(t, "WebhookFunction", endpoint, table, "WEBHOOK_SECRET"))
	var stored []string
	for _, tt := range webhookSamples {
		r := without
		if tt.secret {
			r = withSecret
		}
		raw, err := os.ReadFile(filepath.Join("..", "events", tt.event))
		if err != nil {
			t.Fatal(err)
		}
		g := testutil.ParseGatewayResponse(t, r.invoke(t, raw))
		var body struct {
			Success *bool  `json:"success"`
			Status  string `json:"status"`
		}
		_ = json.Unmarshal([]byte(g.Body), &body)
		ok := g.StatusCode == tt.status
		switch {
		case tt.health:
			ok = ok && body.Status == "ok"
		case tt.stored != "":
			ok = ok && body.Success != nil && *body.Success
			stored = append(stored, tt.stored)
		default:
			ok = ok && body.Success != nil && !*body.Success
		}
		if !ok {
			t.Errorf("%s (secret %v): %d %s, want %d", tt.event, tt.secret, g.StatusCode, g.Body, tt.status)
		}
	}
	entries, err := st.Read(t.Context(), store.Partition("sam-local"), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Message.Text)
	}
	if !slices.Equal(got, stored) {
		t.Errorf("stored %q, want %q", got, stored)
	}

	// events/env.json ends the stream after 10s, for a person at sam local;
	// here after 2s.
	env := append(samLocal(t, "StreamFunction", endpoint, table, "MAX_STREAM_DURATION", "HEARTBEAT_INTERVAL"),
		"MAX_STREAM_DURATION=2s", "HEARTBEAT_INTERVAL=1s")
	stream := startRIE(t, rieBin, bootstraps["stream"], env)
	for _, name := range streamSamples {
		raw, err := os.ReadFile(filepath.Join("..", "events", name))
		if err != nil {
			t.Fatal(err)
		}
		out := stream.invoke(t, raw)
		head, body, found := bytes.Cut(out, make([]byte, 8))
		var prelude struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
		}
		if !found || json.Unmarshal(head, &prelude) != nil || prelude.StatusCode != 200 ||
			prelude.Headers["Content-Type"] != "text/event-stream; charset=utf-8" {
			t.Errorf("%s: %q, want an HTTP integration stream of status 200 with an event stream", name, out)
			continue
		}
		rd := sse.NewReader(bytes.NewReader(body))
		var kinds []string
		for {
			e, err := rd.Next()
			if err != nil {
				break
			}
			var m sseMessage
			if json.Unmarshal([]byte(e.Data), &m) == nil {
				kinds = append(kinds, m.Type+":"+m.Message)
			}
		}
		want := []string{"connected:"}
		for _, text := range stored {
			want = append(want, "webhook_message:"+text)
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("%s: events %q, want %q", name, kinds, want)
		}
		if !bytes.Contains(body, []byte(": heartbeat")) {
			t.Errorf("%s: no heartbeat in %q", name, body)
		}
	}
}

// ---- the stream function under lambdaemu ------------------------------------------

// startStream runs the stream bootstrap under lambdaemu, for the test: up
// to concurrency environments, each invocation bounded by timeout. Its
// output is logged if the test fails.
func startStream(t *testing.T, bootstrap string, timeout time.Duration, concurrency int, env []string) *lambdaemu.Emulator {
	t.Helper()
	out := &testutil.Buffer{}
	e, err := lambdaemu.Start(t.Context(), lambdaemu.Function{
		Path: bootstrap, Name: "StreamFunction", Env: env,
		Timeout: timeout, Concurrency: concurrency, Stdout: out, Stderr: out,
	})
	if err != nil {
		t.Fatalf("lambdaemu: %v", err)
	}
	t.Cleanup(func() {
		e.Close()
		if t.Failed() {
			t.Logf("function output:\n%s", out)
		}
	})
	return e
}

type timedEvent struct {
	sse.Event
	at time.Time
}

type sseMessage struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Message   string  `json:"message"`
	SessionID *string `json:"sessionId"`
	Reason    string  `json:"reason"`
}

// openStream GETs the stream and delivers its events, stamped with their
// arrival time, until the body ends; the error that ended it (io.EOF for a
// clean end) comes last on errc.
func openStream(t *testing.T, url, lastEventID string) (*http.Response, <-chan timedEvent, <-chan error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan timedEvent, 100)
	errc := make(chan error, 1)
	go func() {
		defer close(events)
		rd := sse.NewReader(resp.Body)
		for {
			e, err := rd.Next()
			if err != nil {
				errc <- err
				return
			}
			events <- timedEvent{e, time.Now()}
		}
	}()
	return resp, events, errc
}

func nextEvent(t *testing.T, events <-chan timedEvent, within time.Duration) (timedEvent, sseMessage) {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the stream ended early")
		}
		var m sseMessage
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Fatalf("event data %q: %v", e.Data, err)
		}
		return e, m
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	return timedEvent{}, sseMessage{}
}

// rest collects the remaining events until the stream ends, and how it ended.
func rest(t *testing.T, events <-chan timedEvent, errc <-chan error, within time.Duration) ([]sseMessage, time.Time, error) {
	t.Helper()
	var ms []sseMessage
	timeout := time.After(within)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return ms, time.Now(), <-errc
			}
			var m sseMessage
			if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
				t.Fatalf("event data %q: %v", e.Data, err)
			}
			ms = append(ms, m)
		case <-timeout:
			t.Fatalf("the stream did not end within %v", within)
		}
	}
}

// testStreamUnderEmulator runs the real stream bootstrap behind front:
// progressive delivery, the planned end before the deadline, and an exact
// resume with Last-Event-ID.
func testStreamUnderEmulator(t *testing.T, endpoint, bootstrap string, front func(*lambdaemu.Emulator) http.Handler) {
	const (
		timeout = 8 * time.Second // the function's timeout: its invocations' deadline
		margin  = 3 * time.Second // STREAM_DEADLINE_MARGIN: the stream ends by plan at 5s
	)
	table, st := newTable(t, endpoint)
	ctx := t.Context()
	before := message.New(time.Now(), "", "broadcast before the window opened")
	if _, err := st.Append(ctx, before, ""); err != nil {
		t.Fatal(err)
	}

	e := startStream(t, bootstrap, timeout, 1, functionEnv(endpoint, table,
		"HEARTBEAT_INTERVAL=1s", "POLL_INTERVAL=200ms", "HOLE_TIMEOUT=2s",
		"MAX_STREAM_DURATION=14m", "STREAM_DEADLINE_MARGIN="+margin.String(),
		"REPLAY_COUNT=5", "ALLOWED_ORIGINS=http://localhost:3000"))
	t.Logf("StreamFunction init under lambdaemu (process start to first /next): %v", e.InitDuration())
	srv := httptest.NewServer(front(e))
	defer srv.Close()
	url := srv.URL + "/api/webhook/stream?sessionId=x"

	// 1. Open: connected, then the replay.
	opened := time.Now()
	resp, events, errc := openStream(t, url, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
	}
	if _, m := nextEvent(t, events, 10*time.Second); m.Type != "connected" || m.SessionID == nil || *m.SessionID != "x" {
		t.Fatalf("first event %+v, want connected for x", m)
	}
	if _, m := nextEvent(t, events, 5*time.Second); m.Type != "webhook_message" || m.ID != before.ID || m.SessionID != nil {
		t.Fatalf("replayed %+v, want the broadcast %s", m, before.ID)
	}

	// 2. A message appended mid-stream arrives while the invocation runs.
	mid := message.New(time.Now(), "x", "appended mid-stream")
	appended := time.Now()
	if _, err := st.Append(ctx, mid, ""); err != nil {
		t.Fatal(err)
	}
	ev, m := nextEvent(t, events, 5*time.Second)
	if m.Type != "webhook_message" || m.ID != mid.ID || m.Message != mid.Text || m.SessionID == nil || *m.SessionID != "x" {
		t.Fatalf("event %+v, want %s", m, mid.ID)
	}
	lastID := ev.ID
	t.Logf("mid-stream message arrived %v after its append", ev.at.Sub(appended).Round(time.Millisecond))

	// 3. The stream ends cleanly, by plan, before the deadline.
	more, ended, err := rest(t, events, errc, timeout+5*time.Second)
	if !errors.Is(err, io.EOF) {
		t.Errorf("the stream ended with %v, want a clean end (EOF)", err)
	}
	if len(more) != 0 {
		t.Errorf("unexpected events %+v", more)
	}
	lived := ended.Sub(opened)
	t.Logf("stream ended by plan after %v (deadline %v, margin %v)", lived.Round(time.Millisecond), timeout, margin)
	if lived >= timeout-time.Second || lived < timeout-margin-time.Second {
		t.Errorf("the stream lasted %v, want it to end at about %v, before the %v deadline", lived, timeout-margin, timeout)
	}
	if gap := ended.Sub(ev.at); gap < time.Second {
		t.Errorf("the mid-stream message arrived only %v before the end: the response was buffered", gap)
	}

	// 4. Missed while disconnected; a reconnect with Last-Event-ID gets
	// exactly those, in order.
	missed := []message.Message{
		message.New(time.Now(), "x", "missed, for x"),
		message.New(time.Now().Add(time.Millisecond), "y", "for another session"),
		message.New(time.Now().Add(2*time.Millisecond), "", "missed broadcast"),
	}
	for _, msg := range missed {
		if _, err := st.Append(ctx, msg, ""); err != nil {
			t.Fatal(err)
		}
	}
	resp, events, errc = openStream(t, url, lastID)
	if resp.StatusCode != 200 {
		t.Fatalf("reconnect: status %d", resp.StatusCode)
	}
	if _, m := nextEvent(t, events, 10*time.Second); m.Type != "connected" {
		t.Fatalf("first event after reconnect %+v, want connected", m)
	}
	got, _, err := rest(t, events, errc, timeout+5*time.Second)
	if !errors.Is(err, io.EOF) {
		t.Errorf("the resumed stream ended with %v", err)
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Type+":"+m.ID+m.Reason)
	}
	want := []string{"webhook_message:" + missed[0].ID, "webhook_message:" + missed[2].ID}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("after resuming from %s: %v, want exactly %v", lastID, ids, want)
	}
}
