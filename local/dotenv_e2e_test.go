package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// writeFiles writes name -> content into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The seed guide's setup step: WEBHOOK_SECRET in .env.local guards POST.
// These tests change the working directory, so they never run in parallel.
func TestDotEnvLocalSecret(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".env.local": "# the seed guide's setup step\nWEBHOOK_SECRET=x\n",
		".env":       "WEBHOOK_SECRET=from-dot-env\nREPLAY_COUNT=3\n",
	})
	t.Chdir(dir)
	srv := startServer(t, baseEnv(nil, "WEBHOOK_SECRET"))

	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no header", nil, http.StatusUnauthorized},
		{"value from .env, which .env.local overrides", map[string]string{"X-Webhook-Secret": "from-dot-env"}, http.StatusUnauthorized},
		{"wrong secret", map[string]string{"X-Webhook-Secret": "y"}, http.StatusUnauthorized},
		{"secret from .env.local", map[string]string{"X-Webhook-Secret": "x"}, http.StatusOK},
	} {
		code, res := post(t, srv.Base, map[string]string{"message": "hi"}, tc.header)
		if code != tc.want || res.Success != (tc.want == http.StatusOK) {
			t.Errorf("%s: got %d %+v, want %d", tc.name, code, res, tc.want)
		}
	}
	if !strings.Contains(srv.Log.String(), ".env.local") {
		t.Errorf("the log does not say that .env.local was read:\n%s", srv.Log.String())
	}
}

// The real environment wins over the files.
func TestDotEnvRealEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{".env.local": "WEBHOOK_SECRET=x\n"})
	t.Chdir(dir)
	srv := startServer(t, baseEnv(map[string]string{"WEBHOOK_SECRET": "from-env"}))
	if code, _ := post(t, srv.Base, map[string]string{"message": "hi"}, map[string]string{"X-Webhook-Secret": "x"}); code != http.StatusUnauthorized {
		t.Errorf("secret from .env.local while the environment sets another: got %d, want 401", code)
	}
	mustPost(t, srv.Base, map[string]string{"message": "hi"}, map[string]string{"X-Webhook-Secret": "from-env"})
}

// A malformed line stops run with an error naming the file and the line.
func TestDotEnvMalformedLine(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"no equals sign", ".env.local", "WEBHOOK_SECRET=x\n\nthis is not an assignment\n", ".env.local:3"},
		{"bad key", ".env.local", "# comment\n1BAD=value\n", ".env.local:2"},
		{"unterminated quote", ".env.local", "WEBHOOK_SECRET=\"x\n", ".env.local:1"},
		{"in .env", ".env", "REPLAY_COUNT=3\nnope\n", ".env:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{tc.file: tc.content})
			t.Chdir(dir)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, logs := new(testutil.Buffer), new(testutil.Buffer)
			err := run(ctx, mapLookup(baseEnv(nil, "WEBHOOK_SECRET")), out, logs)
			if err == nil {
				t.Fatalf("run returned nil with a malformed %s; stdout:\n%s", tc.file, out.String())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run error %q does not name %s", err, tc.want)
			}
			if strings.Contains(out.String(), "http://") {
				t.Errorf("run printed a URL although it must not start:\n%s", out.String())
			}
		})
	}
}
