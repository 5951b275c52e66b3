package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// A wire is one kind of server's protocol as the generator speaks it: how a
// message is published, where a stream is opened, and what a stream's events
// say. Everything else (markers, clocks, the delivery checks) is the same for
// every server, so that their figures compare.
type wire interface {
	// publishRequest is the request that publishes msg, the relay's JSON
	// body ({"message":...,"sessionId":...}), to session ("" for a broadcast).
	publishRequest(ctx context.Context, base string, msg []byte, session string) (*http.Request, error)
	// accepted reports whether a publish answer means the message was taken.
	accepted(status int, body []byte) bool
	// streamTarget is the request-target (path and query) of the stream of
	// subscriber idx on session ("" for broadcast only).
	streamTarget(basePath string, idx int, session string) (string, error)
	// parse reads one dispatched event's data.
	parse(data []byte) event
	// health is the number of open streams where the server tells it (-1
	// where it does not), or an error when the server is not up.
	health(ctx context.Context, c *http.Client, base string) (int, error)
}

var (
	_ wire = relayWire{}
	_ wire = (*centrifugoWire)(nil)
)

type eventKind int

const (
	evOther eventKind = iota // heartbeats, pings, anything the generator ignores
	evConnected
	evReset
	evMessage
)

// event is what one event says. For a message: its text, and the target it
// was delivered as (session, or broadcast when isNull); corrupt when the
// event could not be read.
type event struct {
	kind    eventKind
	text    []byte
	session []byte
	isNull  bool
	corrupt bool
}

// relayWire is the relay's own API, which the floor speaks too.
type relayWire struct{}

func (relayWire) publishRequest(ctx context.Context, base string, msg []byte, _ string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/webhook", bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func (relayWire) accepted(status int, body []byte) bool {
	return status == http.StatusOK && bytes.Contains(body, []byte(`"success":true`))
}

func (relayWire) streamTarget(basePath string, _ int, session string) (string, error) {
	t := basePath + "/api/webhook/stream"
	if session != "" {
		t += "?sessionId=" + session
	}
	return t, nil
}

var (
	typeMessage   = []byte(`"type":"webhook_message"`)
	typeConnected = []byte(`"type":"connected"`)
	typeReset     = []byte(`"type":"reset"`)
	keyMessage    = []byte(`"message":"`)
	keySession    = []byte(`"sessionId":`)
)

func (relayWire) parse(data []byte) event {
	switch {
	case bytes.Contains(data, typeMessage):
	case bytes.Contains(data, typeConnected):
		return event{kind: evConnected}
	case bytes.Contains(data, typeReset):
		return event{kind: evReset}
	default:
		return event{}
	}
	ev := event{kind: evMessage}
	var ok bool
	if ev.text, ev.session, ev.isNull, ok = fastFields(data); ok {
		return ev
	}
	var m struct {
		Message   string  `json:"message"`
		SessionID *string `json:"sessionId"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		ev.corrupt = true
		return ev
	}
	ev.text, ev.isNull = []byte(m.Message), m.SessionID == nil
	if m.SessionID != nil {
		ev.session = []byte(*m.SessionID)
	}
	return ev
}

// fastFields picks message and sessionId out of the event JSON without a
// decoder when the message has no escapes (every marker); ok is false
// otherwise.
func fastFields(data []byte) (text, sid []byte, isNull, ok bool) {
	text, ok = fastString(data, keyMessage)
	if !ok {
		return nil, nil, false, false
	}
	i := bytes.Index(data, keySession)
	if i < 0 {
		return nil, nil, false, false
	}
	rest := data[i+len(keySession):]
	switch {
	case bytes.HasPrefix(rest, []byte("null")):
		return text, nil, true, true
	case len(rest) > 0 && rest[0] == '"':
		sid, ok = fastString(rest, []byte(`"`))
		return text, sid, false, ok
	}
	return nil, nil, false, false
}

// fastString is the string after the first key (which ends with its
// opening quote) in data, when it has no escapes.
func fastString(data, key []byte) ([]byte, bool) {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil, false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, false
	}
	return rest[:j], true
}

// getHealth GETs url, bounded to 5 s, and returns the status and the
// start of the body.
func getHealth(ctx context.Context, c *http.Client, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, nil, fmt.Errorf("health: %w", err)
	}
	return resp.StatusCode, body, nil
}

// health GETs /api/webhook and returns activeConnections.
func (relayWire) health(ctx context.Context, c *http.Client, base string) (int, error) {
	status, body, err := getHealth(ctx, c, base+"/api/webhook")
	if err != nil {
		return 0, err
	}
	var h struct {
		Status            string `json:"status"`
		ActiveConnections int    `json:"activeConnections"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return 0, fmt.Errorf("health: %w", err)
	}
	if status != http.StatusOK || h.Status != "ok" {
		return 0, fmt.Errorf("health: %d %q", status, h.Status)
	}
	return h.ActiveConnections, nil
}

func (g *gen) health(ctx context.Context) (int, error) { return g.wire.health(ctx, g.client, g.base) }
