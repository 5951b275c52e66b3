package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Centrifugo (v6) is the third server of `make bench`: a real-time messaging
// server measured by the same generator, clocks and checks as the relay and
// the floor. The relay's model maps onto it as follows:
//
//   - a session is a channel named by the session ID; broadcast is the
//     channel "broadcast" (session IDs here all start with "lg-");
//   - a stream is a uni_sse connection (GET /connection/uni_sse?cf_connect=
//     {"token":...}) whose connection JWT (HS256) subscribes it server-side,
//     by its channels claim, to "broadcast" and, with a session, to the
//     session's channel: the messages a relay stream of that session gets;
//   - a message is published through the server HTTP API (POST /api/publish,
//     X-API-Key) with the relay's JSON body as its data, to the session's
//     channel or to "broadcast";
//   - uni_sse writes each push as one event: the connect push
//     {"connect":{...}} stands for the relay's connected event, a
//     publication is {"channel":...,"pub":{"data":...}}, where the channel
//     is what the delivery checks hold against the message's target.
//
// It runs on its memory engine without history or recovery (the relay runs
// with REPLAY_COUNT=0), bound to 127.0.0.1, with usage statistics off: they
// would be sent off the machine.

const centrifugoBroadcast = "broadcast"

// centrifugoWire speaks to one Centrifugo started by startCentrifugo.
type centrifugoWire struct {
	secret []byte // HMAC key of the connection tokens
	apiKey string
}

func (c *centrifugoWire) publishRequest(ctx context.Context, base string, msg []byte, session string) (*http.Request, error) {
	channel := session
	if channel == "" {
		channel = centrifugoBroadcast
	}
	b := make([]byte, 0, len(msg)+len(channel)+32)
	b = append(b, `{"channel":`...)
	b = strconv.AppendQuote(b, channel)
	b = append(b, `,"data":`...)
	b = append(b, msg...)
	b = append(b, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", c.apiKey)
	return req, nil
}

// accepted: the HTTP API answers 200 with {"result":{...}}, or with
// {"error":{...}} when the call failed.
func (*centrifugoWire) accepted(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"result"`)) && !bytes.Contains(body, []byte(`"error"`))
}

// centrifugoTokenTTL outlives any run (runLoad's bound is well under it): a
// stream is never cut by its token's expiry.
const centrifugoTokenTTL = 6 * time.Hour

func (c *centrifugoWire) token(idx int, session string) (string, error) {
	channels := []string{centrifugoBroadcast}
	if session != "" {
		channels = append(channels, session)
	}
	claims := jwt.MapClaims{
		"sub":      "lg-" + strconv.Itoa(idx),
		"exp":      time.Now().Add(centrifugoTokenTTL).Unix(),
		"channels": channels,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(c.secret)
}

func (c *centrifugoWire) streamTarget(basePath string, idx int, session string) (string, error) {
	tok, err := c.token(idx, session)
	if err != nil {
		return "", fmt.Errorf("centrifugo: sign a connection token: %w", err)
	}
	connect, err := json.Marshal(struct {
		Token string `json:"token"`
	}{tok})
	if err != nil {
		return "", err
	}
	return basePath + "/connection/uni_sse?cf_connect=" + url.QueryEscape(string(connect)), nil
}

var (
	keyConnectPush = []byte(`{"connect":`)
	keyPub         = []byte(`"pub":`)
	keyChannel     = []byte(`"channel":"`)
)

func (*centrifugoWire) parse(data []byte) event {
	switch {
	case bytes.HasPrefix(data, keyConnectPush):
		return event{kind: evConnected}
	case !bytes.Contains(data, keyPub):
		return event{} // a ping ({}), a disconnect push
	}
	ev := event{kind: evMessage}
	channel, ok1 := fastString(data, keyChannel)
	text, ok2 := fastString(data, keyMessage)
	if !ok1 || !ok2 {
		var p struct {
			Channel string `json:"channel"`
			Pub     *struct {
				Data struct {
					Message string `json:"message"`
				} `json:"data"`
			} `json:"pub"`
		}
		if err := json.Unmarshal(data, &p); err != nil || p.Pub == nil {
			ev.corrupt = true
			return ev
		}
		channel, text = []byte(p.Channel), []byte(p.Pub.Data.Message)
	}
	ev.text = text
	if string(channel) == centrifugoBroadcast {
		ev.isNull = true
	} else {
		ev.session = channel
	}
	return ev
}

func (*centrifugoWire) health(ctx context.Context, c *http.Client, base string) (int, error) {
	status, _, err := getHealth(ctx, c, base+"/health")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("health: %d", status)
	}
	return -1, nil
}

// centrifugoConfig is the whole configuration: everything else is
// Centrifugo's default (memory engine, no history, ping every 25 s).
func centrifugoConfig(port int, c *centrifugoWire) map[string]any {
	return map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "info"},
		"client":      map[string]any{"token": map[string]any{"hmac_secret_key": string(c.secret)}},
		"http_api":    map[string]any{"key": c.apiKey},
		"uni_sse":     map[string]any{"enabled": true},
		"health":      map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeLoopbackPort is a port that was free on 127.0.0.1 a moment ago:
// Centrifugo takes its port from the configuration, not from the kernel.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// centrifugoStartWait bounds Centrifugo's start-up, until /health answers.
const centrifugoStartWait = 30 * time.Second

// startCentrifugo runs bin with a configuration generated in a temporary
// directory (removed when it stops) and waits until it is healthy. Another
// process may take the chosen port before Centrifugo binds it: then it
// exits at once, and a second port is tried.
func startCentrifugo(ctx context.Context, bin string) (*serverProcess, *centrifugoWire, error) {
	var err error
	for range 3 {
		var p *serverProcess
		var w *centrifugoWire
		if p, w, err = startCentrifugoOnce(ctx, bin); err == nil {
			return p, w, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, err
}

func startCentrifugoOnce(ctx context.Context, bin string) (*serverProcess, *centrifugoWire, error) {
	w := &centrifugoWire{secret: []byte(randomHex(32)), apiKey: randomHex(32)}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, nil, fmt.Errorf("centrifugo: %w", err)
	}
	dir, err := os.MkdirTemp("", "loadgen-centrifugo-")
	if err != nil {
		return nil, nil, fmt.Errorf("centrifugo: %w", err)
	}
	conf, err := json.MarshalIndent(centrifugoConfig(port, w), "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), conf, 0o600)
	}
	logPath := filepath.Join(dir, "centrifugo.log")
	var logf *os.File
	if err == nil {
		logf, err = os.Create(logPath)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("centrifugo: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.json"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// CENTRIFUGO_* variables would override the file: the run is the file.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CENTRIFUGO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("centrifugo: start %s: %w", bin, err)
	}
	p := newServerProcess(cmd, dir)
	p.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(centrifugoStartWait)
	for {
		if _, err := w.health(ctx, client, p.URL); err == nil {
			return p, w, nil
		}
		select {
		case <-p.exited:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		tail := logTail(logPath, 1500)
		p.Stop()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("centrifugo (%s) did not become healthy on %s within %s; its log ends:\n%s",
			bin, p.URL, centrifugoStartWait, tail)
	}
}

// logTail is the last n bytes of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
