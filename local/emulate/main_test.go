package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

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

func TestRunServesBothFunctionsAndShutsDown(t *testing.T) {
	webhook := buildTestFunction(t, "bufferedfn")
	stream := buildTestFunction(t, "streamfn")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := new(syncBuffer), new(syncBuffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-webhook", webhook, "-stream", stream, "-addr", "127.0.0.1:0"}, stdout, stderr)
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
	if code, body := get(http.MethodPost, "/api/webhook", `{"text":"hi"}`); code != http.StatusCreated || !strings.Contains(body, `"rawPath":"/api/webhook"`) {
		t.Errorf("POST /api/webhook = %d %s", code, body)
	}
	if code, body := get(http.MethodGet, "/api/webhook/stream", ""); code != http.StatusAccepted || body != "ab" {
		t.Errorf("GET /api/webhook/stream = %d %q", code, body)
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
}
