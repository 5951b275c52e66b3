package main

// The seed guide (seed/webhook-integration-guide.md) run as written: its
// "Testing locally" flow against `make run`, and its curl, JavaScript and
// Python examples against a server that sets its WEBHOOK_SECRET.

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// The guide's "Testing locally", with `npm run dev` being `make run`:
//
//	# Terminal 1: Start dev server
//	make run
//
//	# Terminal 2: Send test webhook
//	curl -X POST http://localhost:3000/api/webhook \
//	  -H "Content-Type: application/json" \
//	  -d '{"message": "Test message!"}'
//
// The port is an exported PORT (the Makefile must not override it), so the
// test runs beside a developer's own server on 3000.
func TestGuideTestingLocallyWithMakeRun(t *testing.T) {
	t.Parallel()
	makePath := testutil.LookPath(t, "make")
	curl := testutil.LookPath(t, "curl")
	goTool(t) // make run needs go on PATH (subprocessEnv adds it if missing)

	port := freePort(t)
	cmd := exec.Command(makePath, "run")
	cmd.Dir = repoRoot
	// WEBHOOK_SECRET and DYNAMODB_ENDPOINT set but empty: a developer's .env
	// file in the checkout cannot change the guide's flow (the environment
	// wins over the files).
	cmd.Env = subprocessEnv("PORT="+strconv.Itoa(port), "HOST=127.0.0.1",
		"WEBHOOK_SECRET=", "WEBHOOK_SIGNING_SECRET=", "DYNAMODB_ENDPOINT=",
		"MAKEFLAGS=", "MAKELEVEL=")
	// Own process group: make, go run and the server get the interrupt
	// together, as from a terminal's Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := startProcess(t, cmd)
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		if err := p.wait(15 * time.Second); errors.Is(err, errTimeout) {
			t.Errorf("make run did not stop within 15s of SIGINT; killing it")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
	})

	// go run compiles first: allow for a cold build cache.
	url, printed := waitURL(t, p.out, 90*time.Second, p.exited)
	if printed != port {
		t.Fatalf("make run listens on %s, want the exported PORT=%d", url, port)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitHealthy(t, base, 10*time.Second, p.exited)
	if !strings.Contains(p.out.String(), "curl -X POST "+url+"/api/webhook") {
		t.Errorf("the startup line does not show the curl command for %s:\n%s", url, p.out.String())
	}

	stream := openStream(t, base, "")

	// The guide's command, verbatim but for the port.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, curl, "-X", "POST", "http://localhost:"+strconv.Itoa(port)+"/api/webhook",
		"-H", "Content-Type: application/json",
		"-d", `{"message": "Test message!"}`)
	c.Env = subprocessEnv()
	out, err := c.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("the guide's curl command failed: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(string(out), `"success":true`) {
		t.Fatalf("curl printed %s, want \"success\":true", out)
	}
	var res postResult
	if err := json.Unmarshal(out, &res); err != nil || res.MessageID == "" {
		t.Fatalf("curl printed %s: %v", out, err)
	}
	ev := stream.waitMessage(t, res.MessageID, 5*time.Second)
	if ev.Data["message"] != "Test message!" || ev.Data["sessionId"] != nil {
		t.Errorf("the open stream got %v, want the broadcast \"Test message!\"", ev.Data)
	}
}

// The guide's examples, each verbatim but for the URL, against a server with
// the guide's WEBHOOK_SECRET; each answers success and reaches an open stream.
func TestGuideExamples(t *testing.T) {
	t.Parallel()
	const secret = "your-secret-key-here"
	srv := startServer(t, baseEnv(map[string]string{"WEBHOOK_SECRET": secret}))
	api := srv.URL + "/api/webhook" // http://localhost:<port>, as the server prints it

	// Without the secret the guide says 401.
	if code, _ := post(t, srv.Base, map[string]string{"message": "no secret"}, nil); code != 401 {
		t.Errorf("POST without X-Webhook-Secret: got %d, want 401", code)
	}

	examples := []struct {
		name, tool, message string
		args                func(bin string) []string
		probe               []string // arguments with which tool must succeed first, else the test skips
	}{
		{
			name: "curl", tool: "curl", message: "Hello from external service!",
			args: func(bin string) []string {
				return []string{bin, "-X", "POST", api,
					"-H", "Content-Type: application/json",
					"-H", "X-Webhook-Secret: your-secret-key-here",
					"-d", `{"message": "Hello from external service!"}`}
			},
		},
		{
			name: "JavaScript", tool: "node", message: "Alert: New property listed in Dubai Marina!",
			args: func(bin string) []string {
				// ES module for top-level await, as the guide's usage line has.
				return []string{bin, "--input-type=module", "-e", `async function sendWebhookMessage(message) {
  const response = await fetch('` + api + `', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-Webhook-Secret': 'your-secret-key-here',
    },
    body: JSON.stringify({ message }),
  });

  return response.json();
}

// Usage
console.log(JSON.stringify(await sendWebhookMessage('Alert: New property listed in Dubai Marina!')));
`}
			},
			probe: []string{"-e", "if (typeof fetch !== 'function') process.exit(1)"}, // Node.js 18 or later
		},
		{
			name: "Python", tool: "python3", message: "Price alert: Marina apartments -5%!",
			args: func(bin string) []string {
				return []string{bin, "-c", `import requests

def send_webhook_message(message, session_id=None):
    url = "` + api + `"
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Secret": "your-secret-key-here"
    }
    data = {"message": message}

    if session_id:
        data["sessionId"] = session_id

    response = requests.post(url, json=data, headers=headers)
    return response.json()

# Usage
import json
print(json.dumps(send_webhook_message("Price alert: Marina apartments -5%!"), separators=(",", ":")))
`}
			},
			probe: []string{"-c", "import requests"},
		},
	}
	stream := openStream(t, srv.Base, "")
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			bin := testutil.LookPath(t, ex.tool, ex.probe...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := ex.args(bin)
			c := exec.CommandContext(ctx, args[0], args[1:]...)
			c.Env = subprocessEnv()
			c.Dir = t.TempDir()
			out, err := c.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("%s example failed: %v\n%s%s", ex.name, err, out, stderr)
			}
			var res postResult
			if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &res); err != nil {
				t.Fatalf("%s example printed %q: %v", ex.name, out, err)
			}
			if !res.Success || res.MessageID == "" || res.Timestamp == 0 {
				t.Fatalf("%s example got %s, want success true with messageId and timestamp", ex.name, out)
			}
			ev := stream.waitMessage(t, res.MessageID, 5*time.Second)
			if ev.Data["message"] != ex.message {
				t.Errorf("stream got %q, want %q", ev.Data["message"], ex.message)
			}
		})
	}
}
