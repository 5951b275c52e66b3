package main

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// TestBannerCurlWorksWhenPasted pastes the startup line's curl command into
// a shell that has no WEBHOOK_SECRET (the secret often comes from
// .env.local): it must still be accepted.
func TestBannerCurlWorksWhenPasted(t *testing.T) {
	t.Parallel()
	testutil.LookPath(t, "curl")
	// A rotation list: the banner sends the first entry.
	for _, secret := range []string{"", "your-secret-key-here", `it's $HOME "quoted" \ ;`, "new-s3cret, old-s3cret"} {
		t.Run(strconv.Quote(secret), func(t *testing.T) {
			srv := startServer(t, baseEnv(map[string]string{"WEBHOOK_SECRET": secret}))
			_, line, ok := strings.Cut(srv.Out.String(), "send a message:")
			line, _, _ = strings.Cut(line, "\n")
			if !ok || !strings.HasPrefix(strings.TrimSpace(line), "curl ") {
				t.Fatalf("no curl command in the startup output:\n%s", srv.Out.String())
			}
			if strings.Contains(secret, ",") && strings.Contains(line, "old-s3cret") {
				t.Fatalf("the banner shows more than the first secret of the list: %s", line)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := exec.CommandContext(ctx, "sh", "-c", strings.TrimSpace(line)+" -sS -w ' HTTP %{http_code}'")
			c.Env = subprocessEnv("WEBHOOK_SECRET=")
			out, err := c.CombinedOutput()
			if err != nil || !strings.Contains(string(out), `"success":true`) || !strings.HasSuffix(string(out), " HTTP 200") {
				t.Fatalf("pasted %s\ngot %s (%v)", line, out, err)
			}
		})
	}
}

// TestBannerStartupErrorsSayWhatToDo: a DYNAMODB_ENDPOINT that does not
// answer, or has no scheme, stops the adapter with one line naming the fix.
func TestBannerStartupErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	closed := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	tests := []struct {
		endpoint string
		want     []string
	}{
		{closed, []string{"DYNAMODB_ENDPOINT=" + closed + " does not answer", "is DynamoDB Local running?", "make dynamodb-local-start"}},
		{"localhost:8000", []string{"DYNAMODB_ENDPOINT", "http://", "make dynamodb-local-start"}},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			env := baseEnv(map[string]string{"DYNAMODB_ENDPOINT": tt.endpoint,
				"AWS_ACCESS_KEY_ID": "dummy", "AWS_SECRET_ACCESS_KEY": "dummy", "AWS_REGION": "us-east-1"})
			err := run(ctx, mapLookup(env), io.Discard, io.Discard)
			if err == nil {
				t.Fatal("run returned nil")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}
