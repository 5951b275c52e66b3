package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

func buildTestFunction(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", out, "../lambdaemu/testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}

// TestRunServesBothFunctionsAndShutsDown, in both shapes of the template.
// With RestApi the stream function is the test function's REST mode, and
// GET / goes to the webhook function, which serves the page on AWS.
func TestRunServesBothFunctionsAndShutsDown(t *testing.T) {
	webhook := buildTestFunction(t, "bufferedfn")
	stream := buildTestFunction(t, "streamfn")
	for _, tc := range []struct {
		shape    string
		streamfn string // STREAMFN_MODE
		pathKey  string // how the webhook's echoed event names the path
		status   int    // the test function's answer to it (by payload version)
	}{
		{functionURL, "", "rawPath", http.StatusCreated},
		{restAPI, "rest", "path", http.StatusAccepted},
	} {
		t.Run(tc.shape, func(t *testing.T) {
			t.Setenv("STREAMFN_MODE", tc.streamfn)
			testRun(t, webhook, stream, tc.shape, tc.pathKey, tc.status)
		})
	}
}

func testRun(t *testing.T, webhook, stream, shape, pathKey string, webhookStatus int) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := new(testutil.Buffer), new(testutil.Buffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-webhook", webhook, "-stream", stream, "-addr", "127.0.0.1:0", "-stream-endpoint", shape}, stdout, stderr)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	}()

	serving := regexp.MustCompile(`serving (http://127\.0\.0\.1:\d+)`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == ""; time.Sleep(20 * time.Millisecond) {
		if m := serving.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatal("no URL printed")
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		default:
		}
	}

	get := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	webhookGot := func(code int, path, body string) bool {
		return code == webhookStatus && strings.Contains(body, `"`+pathKey+`":"`+path+`"`)
	}
	if code, body := get(http.MethodPost, "/api/webhook", `{"text":"hi"}`); !webhookGot(code, "/api/webhook", body) {
		t.Errorf("POST /api/webhook = %d %s", code, body)
	}
	if code, body := get(http.MethodGet, "/api/webhook/stream", ""); code != http.StatusAccepted || body != "ab" {
		t.Errorf("GET /api/webhook/stream = %d %q", code, body)
	}
	if code, body := get(http.MethodPost, "/api/webhook/stream/close?connectionId=c", ""); code != http.StatusAccepted || body != "ab" {
		t.Errorf("POST /api/webhook/stream/close = %d %q, want the stream function", code, body)
	}
	code, body := get(http.MethodGet, "/", "")
	if shape == restAPI {
		if !webhookGot(code, "/", body) {
			t.Errorf("GET / = %d %s, want the webhook function (it serves the page)", code, body)
		}
	} else if code != http.StatusOK || !strings.Contains(body, "EventSource") {
		t.Errorf("GET / = %d, want the chat page", code)
	}
	if code, body := get(http.MethodGet, "/elsewhere", ""); !webhookGot(code, "/elsewhere", body) {
		t.Errorf("GET /elsewhere = %d %s, want the webhook function", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	http.DefaultClient.CloseIdleConnections()
	for _, want := range []string{
		"emulate: webhook: " + map[string]string{functionURL: "2", restAPI: "3"}[shape] + " invocations, billed ",
		"emulate: stream: 2 invocations, billed ",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), `"msg":"report"`) || !strings.Contains(stderr.String(), `"billedMs":`) {
		t.Errorf("no report line with billedMs in the log")
	}
}

// TestEnsureTable: with DYNAMODB_ENDPOINT set, emulate creates TABLE_NAME
// (with TTL on the store's attribute) before it starts the functions, and
// finding it there already is fine.
func TestEnsureTable(t *testing.T) {
	endpoint := dynamotest.Endpoint(t)
	table := dynamotest.TableName(t)
	t.Setenv("TABLE_NAME", table)
	client := dynamotest.Client(t, endpoint)
	for i := range 2 {
		if got, err := ensureTable(t.Context(), endpoint); err != nil || got != table {
			t.Fatalf("ensureTable #%d: %q, %v", i+1, got, err)
		}
	}
	ttl, err := client.DescribeTimeToLive(t.Context(), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != dynamostore.TTLAttribute ||
		d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
		t.Errorf("TTL %+v, want enabled on %s", d, dynamostore.TTLAttribute)
	}

	t.Setenv("TABLE_NAME", "")
	t.Setenv("RATE_LIMIT_PER_MINUTE", "-1")
	if _, err := ensureTable(t.Context(), endpoint); err == nil || !strings.Contains(err.Error(), "RATE_LIMIT_PER_MINUTE") {
		t.Errorf("bad configuration: %v, want an error naming the variable", err)
	}
	t.Setenv("RATE_LIMIT_PER_MINUTE", "")

	// No function to run: the table alone, for sam local.
	t.Setenv("TABLE_NAME", table+"-only")
	t.Setenv("DYNAMODB_ENDPOINT", endpoint)
	var stdout testutil.Buffer
	if err := run(t.Context(), nil, &stdout, io.Discard); err != nil || !strings.Contains(stdout.String(), "table "+table+"-only ready at "+endpoint) {
		t.Errorf("run without functions: %v, %q", err, stdout.String())
	}
	if _, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(table + "-only")}); err != nil {
		t.Errorf("the table alone was not created: %v", err)
	}
	t.Setenv("DYNAMODB_ENDPOINT", "")
	if err := run(t.Context(), nil, io.Discard, io.Discard); err == nil {
		t.Error("run with nothing to do: want an error")
	}
}
