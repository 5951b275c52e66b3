// Package dynamotest gives tests a DynamoDB Local to talk to. Import it from _test.go
// files only.
//
// Typical use:
//
//	func TestMain(m *testing.M) { dynamotest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		endpoint := dynamotest.Endpoint(t) // skips (or fails when CI=true) if unavailable
//		client := dynamotest.Client(t, endpoint)
//		table := dynamotest.TableName(t)
//		...
//	}
//
// Endpoint returns the shared instance named by WEBHOOK_RELAY_TEST_DYNAMODB (set by
// `make test`: one DynamoDB Local for the whole run) or starts one for this test
// process through infra/dynamodb-local.sh. Start starts a separate, private instance
// backed by files, which a fault test may stop and restart with the same data.
package dynamotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// EnvEndpoint names the environment variable holding the endpoint of a DynamoDB Local
// shared by a whole test run (e.g. http://127.0.0.1:41234). When it is set, Endpoint
// returns it and starts nothing.
const EnvEndpoint = "WEBHOOK_RELAY_TEST_DYNAMODB"

// scriptPath is the start/stop script, relative to the repository root.
const scriptPath = "infra/dynamodb-local.sh"

func init() {
	// The SDK must never probe the instance-metadata address, also in tests that
	// forget Main.
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Main is for TestMain: it runs the tests, stops any DynamoDB Local this process
// started and exits with the tests' status.
func Main(m *testing.M) {
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// unavailable fails the test with CI=true and skips it elsewhere
// (testutil.Unavailable).
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testutil.Unavailable(t, "DynamoDB Local unavailable: %s (install java 17+ and npm, or set %s)", fmt.Sprintf(format, args...), EnvEndpoint)
}

var shared struct {
	once     sync.Once
	endpoint string
	err      error
	stateDir string // set when this process started the instance
}

// Endpoint returns the DynamoDB Local endpoint to use: $WEBHOOK_RELAY_TEST_DYNAMODB when
// set, else one instance started for this process (once; stopped by Main, and killed
// by the script's watcher when the process exits). When none can be had it skips the
// test, or fails it when CI=true.
func Endpoint(t testing.TB) string {
	t.Helper()
	if ep := strings.TrimSpace(os.Getenv(EnvEndpoint)); ep != "" {
		t.Logf("dynamotest: using shared DynamoDB Local %s (from %s)", ep, EnvEndpoint)
		return ep
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "dynamotest-state-")
		if err != nil {
			shared.err = fmt.Errorf("state dir: %w", err)
			return
		}
		shared.stateDir = dir
		shared.endpoint, shared.err = runScript(dir, "start", "--watch-pid", strconv.Itoa(os.Getpid()))
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "dynamotest: started DynamoDB Local %s for this test process (state %s)\n", shared.endpoint, dir)
		}
	})
	if shared.err != nil {
		unavailable(t, "%v", shared.err)
	}
	t.Logf("dynamotest: using DynamoDB Local %s (started by this process)", shared.endpoint)
	return shared.endpoint
}

func stopShared() {
	if shared.stateDir == "" {
		return
	}
	if _, err := runScript(shared.stateDir, "stop"); err != nil {
		fmt.Fprintf(os.Stderr, "dynamotest: stopping DynamoDB Local: %v\n", err)
	}
	_ = os.RemoveAll(shared.stateDir)
	shared.stateDir = ""
}

// Process is a private DynamoDB Local started by Start. Stop, Kill and Restart must be
// called from the test's goroutine (they may call t.Fatalf).
type Process struct {
	t        testing.TB
	stateDir string
	dbPath   string
	mu       sync.Mutex
	port     string
	endpoint string
	running  bool
}

// Start starts a separate DynamoDB Local for this test that keeps its data in dbPath
// (-dbPath; "" means a fresh t.TempDir()), so that Stop/Kill and Restart keep the data.
// It is stopped at the end of the test. When it cannot be started the test is skipped,
// or failed when CI=true.
func Start(t testing.TB, dbPath string) *Process {
	t.Helper()
	if dbPath == "" {
		dbPath = t.TempDir()
	}
	if abs, err := filepath.Abs(dbPath); err == nil {
		dbPath = abs
	}
	p := &Process{t: t, stateDir: t.TempDir(), dbPath: dbPath}
	ep, err := runScript(p.stateDir, "start", "--db-path", dbPath, "--watch-pid", strconv.Itoa(os.Getpid()))
	if err != nil {
		unavailable(t, "%v", err)
	}
	p.endpoint = ep
	p.port = ep[strings.LastIndexByte(ep, ':')+1:]
	p.running = true
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.running {
			if _, err := runScript(p.stateDir, "stop"); err != nil {
				t.Errorf("dynamotest: stopping private DynamoDB Local: %v", err)
			}
			p.running = false
		}
	})
	t.Logf("dynamotest: started private DynamoDB Local %s (dbPath %s)", ep, dbPath)
	return p
}

// Endpoint is the instance's URL (the same across Restart).
func (p *Process) Endpoint() string { return p.endpoint }

// DBPath is the directory holding the instance's data.
func (p *Process) DBPath() string { return p.dbPath }

// Stop stops the instance gracefully (SIGTERM) and waits until it has exited.
func (p *Process) Stop() { p.stop("stop") }

// Kill kills the instance with SIGKILL (a crash) and waits until it has exited.
func (p *Process) Kill() { p.stop("stop", "--kill") }

func (p *Process) stop(args ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := runScript(p.stateDir, args...); err != nil {
		p.t.Fatalf("dynamotest: %v", err)
	}
	p.running = false
}

// Restart starts the instance again on the same port with the same data, stopping it
// first if it is running. It fails the test if that is not possible.
func (p *Process) Restart() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		if _, err := runScript(p.stateDir, "stop"); err != nil {
			p.t.Fatalf("dynamotest: %v", err)
		}
		p.running = false
	}
	var err error
	// The port may linger briefly after the old process exits: retry a few times.
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		var ep string
		ep, err = runScript(p.stateDir, "start", "--port", p.port, "--db-path", p.dbPath, "--watch-pid", strconv.Itoa(os.Getpid()))
		if err == nil {
			if ep != p.endpoint {
				p.t.Fatalf("dynamotest: restart came up at %s, want %s", ep, p.endpoint)
			}
			p.running = true
			return
		}
	}
	p.t.Fatalf("dynamotest: restarting DynamoDB Local on port %s: %v", p.port, err)
}

// runScript runs infra/dynamodb-local.sh with DYNAMODB_LOCAL_STATE=stateDir and
// returns its stdout (for start: the endpoint). Errors carry the script's stderr.
func runScript(stateDir string, args ...string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return "", errors.New("bash not found")
	}
	// The script waits up to DYNAMODB_LOCAL_START_TIMEOUT (60s) itself, plus a first
	// npm install; this timeout is only a backstop against a hung script.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, scriptPath)}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DYNAMODB_LOCAL_STATE="+stateDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", scriptPath, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	out := strings.TrimSpace(stdout.String())
	if args[0] == "start" && !strings.HasPrefix(out, "http://127.0.0.1:") {
		return "", fmt.Errorf("%s start printed %q, want http://127.0.0.1:PORT\n%s", scriptPath, out, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// repoRoot is the module root, which must hold the script.
func repoRoot() (string, error) {
	dir, err := testutil.RepoRoot()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, scriptPath)); err != nil {
		return "", fmt.Errorf("repository root %s has no %s", dir, scriptPath)
	}
	return dir, nil
}

// Client returns a DynamoDB client for endpoint with static credentials
// (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN from the environment,
// else "dummy"/"dummy") and region AWS_REGION / AWS_DEFAULT_REGION, else us-east-1.
// DynamoDB Local keeps one database per access key and region. Built by hand: no
// shared config files, no credential chain, never instance metadata. optFns are applied
// after the endpoint is set (e.g. to change the retryer in a fault test).
func Client(t testing.TB, endpoint string, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	if endpoint == "" {
		t.Fatal("dynamotest.Client: empty endpoint")
	}
	cfg := aws.Config{
		Region:      Region(),
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(envOr("AWS_ACCESS_KEY_ID", "dummy"), envOr("AWS_SECRET_ACCESS_KEY", "dummy"), os.Getenv("AWS_SESSION_TOKEN"))),
	}
	opts := append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	}}, optFns...)
	return dynamodb.NewFromConfig(cfg, opts...)
}

// Region is the region Client uses: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
func Region() string {
	if r := os.Getenv("AWS_REGION"); r != "" {
		return r
	}
	return envOr("AWS_DEFAULT_REGION", "us-east-1")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TableName returns a table name unique to this test and call: "test-" + the test's
// name reduced to [a-zA-Z0-9_.-] + "-" + 8 random hex characters, at most 255 chars.
func TableName(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	const maxName = 255 - len("test-") - len("-12345678")
	if len(name) > maxName {
		name = name[:maxName]
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("dynamotest.TableName: %v", err)
	}
	return "test-" + name + "-" + hex.EncodeToString(rnd[:])
}
