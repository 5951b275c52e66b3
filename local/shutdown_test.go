package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGTERM with open streams: the built command ends every stream cleanly (the
// client reads EOF: the chunked response was terminated, not cut or reset) and
// exits 0 within 5 s.
func TestShutdownOnSIGTERMEndsStreamsCleanly(t *testing.T) {
	t.Parallel()
	bin := builtCommand(t)
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir() // no .env files
	cmd.Env = subprocessEnv("HOST=127.0.0.1", "PORT=0", "HEARTBEAT_INTERVAL=1s",
		"WEBHOOK_SECRET=", "WEBHOOK_SIGNING_SECRET=", "DYNAMODB_ENDPOINT=",
		"RATE_LIMIT_PER_MINUTE=0", "SESSION_RATE_LIMIT_PER_MINUTE=0", "MAX_STREAMS_PER_IP=0")
	p := startProcess(t, cmd)
	_, port := waitURL(t, p.out, 20*time.Second, p.exited)
	base := "http://127.0.0.1:" + itoa(port)

	withSession := openStream(t, base, "sessionId=shutdown-test")
	broadcastOnly := openStream(t, base, "")
	id := mustPost(t, base, map[string]string{"message": "before shutdown", "sessionId": "shutdown-test"}, nil)
	withSession.waitMessage(t, id, 5*time.Second)

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.wait(5 * time.Second)
	took := time.Since(start)
	if errors.Is(err, errTimeout) {
		t.Fatalf("still running 5s after SIGTERM")
	}
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v (want status 0)", err)
	}
	t.Logf("exited 0 %s after SIGTERM", took.Round(time.Millisecond))

	for name, s := range map[string]*sseStream{"session stream": withSession, "broadcast stream": broadcastOnly} {
		select {
		case <-s.done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s still open after the process exited", name)
		}
		if s.err != io.EOF {
			t.Errorf("%s ended with %v, want a clean end (io.EOF)", name, s.err)
		}
	}

	// The log is buffered: nothing of it may be lost on SIGTERM. Every line
	// is whole JSON, and the last ones are there: the accepted POST, both
	// streams' close, the shutdown.
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(p.errOut.String(), "\n"), "\n") {
		var e struct {
			Msg    string `json:"msg"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		count[e.Msg+" "+e.Reason]++
	}
	for line, want := range map[string]int{"webhook request ": 1, "stream closed server shutdown": 2, "shutting down: ending open streams ": 1} {
		if count[line] != want {
			t.Errorf("log after SIGTERM has %d %q lines, want %d\n%s", count[line], line, want, p.errOut)
		}
	}
}

// A browser keeps pre-opened connections on which it has sent nothing yet.
// net/http's Shutdown counts such a connection as active for its first 5 s,
// so with a browser open, Ctrl-C would take the whole shutdown grace.
func TestShutdownWithIdleBrowserConnection(t *testing.T) {
	t.Parallel()
	bin := builtCommand(t)
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = subprocessEnv("HOST=127.0.0.1", "PORT=0",
		"WEBHOOK_SECRET=", "WEBHOOK_SIGNING_SECRET=", "DYNAMODB_ENDPOINT=")
	p := startProcess(t, cmd)
	_, port := waitURL(t, p.out, 20*time.Second, p.exited)
	base := "http://127.0.0.1:" + itoa(port)
	stream := openStream(t, base, "sessionId=idle-conn-test")
	idle, err := net.Dial("tcp", "127.0.0.1:"+itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = p.wait(3 * time.Second)
	if errors.Is(err, errTimeout) {
		t.Fatalf("still running 3s after SIGTERM with an idle connection open")
	}
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v (want status 0)", err)
	}
	t.Logf("exited 0 %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	<-stream.done
	if stream.err != io.EOF {
		t.Errorf("stream ended with %v, want io.EOF", stream.err)
	}
}
