package lambdaproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// invoke runs the Lambda handler as the runtime would: the event's JSON in,
// the response marshalled to JSON out.
func invoke(t *testing.T, h func(context.Context, json.RawMessage) (any, error), event json.RawMessage) testutil.GatewayResponse {
	t.Helper()
	ctx := lambdacontext.NewContext(t.Context(), &lambdacontext.LambdaContext{AwsRequestID: "fixture-request"})
	out, err := h(ctx, event)
	if err != nil {
		t.Fatalf("handler error: %v", err)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.ParseGatewayResponse(t, raw)
}

func testConfig() config.Config {
	cfg := config.Defaults()
	cfg.RateLimitPerMinute = 0
	cfg.SessionRateLimitPerMinute = 0
	return cfg
}

// TestAPIGatewayFixtures drives the ingest handler through the adapter with
// API Gateway events of both payload versions, as the webhook function does.
func TestAPIGatewayFixtures(t *testing.T) {
	for _, tt := range testutil.GatewayCases {
		t.Run(tt.Event, func(t *testing.T) {
			st := memstore.New(store.Options{})
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			h := lambdaproxy.APIGateway(lambdaproxy.Recover(
				ingest.New(st, testConfig(), ingest.Options{Logger: log, RequestID: lambdaproxy.RequestID}), log))

			r := invoke(t, h, testutil.Event(t, tt.Event))
			if r.StatusCode != tt.Status {
				t.Fatalf("status %d, want %d; body %s", r.StatusCode, tt.Status, r.Body)
			}
			if ct := r.Header("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", r.Body, err)
			}
			head, err := st.Head(t.Context(), store.Partition(testutil.FixtureSession))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.Health:
				if body["status"] != "ok" || body["activeConnections"] != float64(0) {
					t.Errorf("health body %s", r.Body)
				}
			case tt.Stored != "":
				if body["success"] != true || body["messageId"] == nil || body["timestamp"] == nil {
					t.Fatalf("body %s, want success with messageId and timestamp", r.Body)
				}
				entries, err := st.Read(t.Context(), store.Partition(testutil.FixtureSession), 0, 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 1 || entries[0].Message.Text != tt.Stored || entries[0].Message.ID != body["messageId"] {
					t.Errorf("stored %+v, want one message %q with id %v", entries, tt.Stored, body["messageId"])
				}
			default:
				if body["success"] != false || !strings.Contains(body["error"].(string), tt.ErrHas) {
					t.Errorf("body %s, want success false and an error about %q", r.Body, tt.ErrHas)
				}
				if head.Seq != 0 {
					t.Errorf("bad input took sequence number %d: something changed", head.Seq)
				}
			}
			// The Lambda request id reaches the request log.
			if !strings.Contains(logs.String(), `"fixture-request"`) {
				t.Errorf("request log lacks the Lambda request id:\n%s", logs.String())
			}
		})
	}
}

func TestAPIGatewayRejectsGarbage(t *testing.T) {
	h := lambdaproxy.APIGateway(http.NotFoundHandler())
	if _, err := h(t.Context(), json.RawMessage(`not json`)); err == nil {
		t.Error("want an error for an event that is not JSON")
	}
}

type panicky struct{ calls int }

func (p *panicky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.calls++
	if p.calls == 1 {
		panic("boom: secret internals")
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestRecover: a panicking handler answers a JSON 500 without internals, is
// logged with its stack, and the process (this test) lives on to serve the
// next request, behind either adapter.
func TestRecover(t *testing.T) {
	t.Run("API Gateway", func(t *testing.T) {
		var logs bytes.Buffer
		p := &panicky{}
		h := lambdaproxy.APIGateway(lambdaproxy.Recover(p, slog.New(slog.NewJSONHandler(&logs, nil))))
		r := invoke(t, h, testutil.Event(t, "apigw-v2-health.json"))
		if r.StatusCode != 500 || r.Body != "{\"success\":false,\"error\":\"Internal error.\"}\n" {
			t.Errorf("panic answered %d %q", r.StatusCode, r.Body)
		}
		if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "boom") {
			t.Errorf("panic not logged:\n%s", logs.String())
		}
		if r := invoke(t, h, testutil.Event(t, "apigw-v2-health.json")); r.StatusCode != http.StatusNoContent {
			t.Errorf("after the panic: status %d, want 204", r.StatusCode)
		}
	})

	for _, name := range streamEvents {
		t.Run("stream "+name, func(t *testing.T) {
			// Without Recover this panic, in the adapter's goroutine, would
			// kill the test binary.
			p := &panicky{}
			h := lambdaproxy.Stream(lambdaproxy.Recover(p, slog.New(slog.DiscardHandler)))
			out, err := h(t.Context(), testutil.Event(t, name))
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(out)
			pre := readPrelude(t, br)
			body, _ := io.ReadAll(br)
			if pre.StatusCode != 500 || pre.Headers["Content-Type"] != "application/json" || !strings.Contains(string(body), `"success":false`) {
				t.Errorf("panic answered %+v %q", pre, body)
			}
			if strings.Contains(string(body), "boom") {
				t.Errorf("the answer leaks the panic: %q", body)
			}
			out, err = h(t.Context(), testutil.Event(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if pre := readPrelude(t, bufio.NewReader(out)); pre.StatusCode != http.StatusNoContent {
				t.Errorf("after the panic: %+v", pre)
			}
		})
	}

	t.Run("after the body started", func(t *testing.T) {
		h := lambdaproxy.Recover(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("partial"))
			panic("late")
		}), slog.New(slog.DiscardHandler))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != 200 || rec.Body.String() != "partial" {
			t.Errorf("got %d %q: nothing may be appended to a started body", rec.Code, rec.Body.String())
		}
	})
}

// streamEvents are the events the stream function meets, one per front.
var streamEvents = []string{"function-url-stream.json", "apigw-v1-stream.json"}

// prelude is the JSON head of a streamed HTTP integration response.
type prelude struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
}

// readPrelude reads the response stream as Lambda sends it on: the JSON
// prelude up to the eight NUL bytes that end it. What follows is the body.
func readPrelude(t *testing.T, r *bufio.Reader) prelude {
	t.Helper()
	head, err := r.ReadBytes(0)
	if err != nil {
		t.Fatalf("response stream ended inside its prelude: %q %v", head, err)
	}
	nuls := make([]byte, 7)
	if _, err := io.ReadFull(r, nuls); err != nil || !bytes.Equal(nuls, make([]byte, 7)) {
		t.Fatalf("prelude %q is not followed by eight NUL bytes (%q, %v)", head, nuls, err)
	}
	var p prelude
	if err := json.Unmarshal(head[:len(head)-1], &p); err != nil {
		t.Fatalf("prelude %q: %v", head, err)
	}
	return p
}

// TestStreamProgressive runs the stream handler as the stream function does
// (lambdaproxy.Stream around Recover) with the event of each front, and
// reads from the response stream, as Lambda relays it, the connected event
// and then a message appended afterwards while the handler is still
// running: the body streams, it is not buffered until the end.
func TestStreamProgressive(t *testing.T) {
	for _, name := range streamEvents {
		t.Run(name, func(t *testing.T) { testStreamProgressive(t, name) })
	}
}

func testStreamProgressive(t *testing.T, event string) {
	st := memstore.New(store.Options{})
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"http://localhost:3000"}
	returned := make(chan struct{})
	var seen *http.Request
	inner := stream.New(st, cfg, stream.Options{Logger: slog.New(slog.DiscardHandler)})
	h := lambdaproxy.Stream(lambdaproxy.Recover(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		seen = r
		inner.ServeHTTP(w, r)
	}), slog.New(slog.DiscardHandler)))

	// A Lambda context: it carries the invocation's deadline.
	ctx, cancel := context.WithTimeout(lambdacontext.NewContext(t.Context(), &lambdacontext.LambdaContext{AwsRequestID: "stream-request"}), 60*time.Second)
	defer cancel()
	out, err := h(ctx, testutil.Event(t, event))
	if err != nil {
		t.Fatal(err)
	}
	defer out.(io.Closer).Close()
	if ct := out.(interface{ ContentType() string }).ContentType(); ct != "application/vnd.awslambda.http-integration-response" {
		t.Errorf("response content type %q, want Lambda's HTTP integration stream", ct)
	}
	body := bufio.NewReader(out)
	p := readPrelude(t, body)
	if p.StatusCode != 200 || p.Headers["Content-Type"] != "text/event-stream; charset=utf-8" || p.Headers["Cache-Control"] != "no-cache" {
		t.Fatalf("prelude %+v", p)
	}
	if got := p.Headers["Access-Control-Allow-Origin"]; got != "http://localhost:3000" {
		t.Errorf("Access-Control-Allow-Origin %q for the fixture's Origin", got)
	}

	events := make(chan sse.Event)
	readErr := make(chan error, 1)
	go func() {
		rd := sse.NewReader(body)
		for {
			e, err := rd.Next()
			if err != nil {
				readErr <- err
				close(events)
				return
			}
			events <- e
		}
	}()
	next := func() sse.Event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("stream ended: %v", <-readErr)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s: the body is not streamed")
		}
		return sse.Event{}
	}

	var connected struct {
		Type      string  `json:"type"`
		SessionID *string `json:"sessionId"`
	}
	first := next()
	if err := json.Unmarshal([]byte(first.Data), &connected); err != nil || connected.Type != "connected" || connected.SessionID == nil || *connected.SessionID != "x" {
		t.Fatalf("first event %+v, want connected for session x", first)
	}
	if first.ID == "" {
		t.Error("connected event has no id")
	}
	// The request as the handler saw it: the path without the stage, the
	// query, and the source address from the event, not from a header.
	if seen.URL.Path != "/api/webhook/stream" || seen.URL.Query().Get("sessionId") != "x" || seen.RemoteAddr != "198.51.100.23" || seen.Method != http.MethodGet {
		t.Errorf("request %s %s from %q", seen.Method, seen.URL, seen.RemoteAddr)
	}

	sent := message.New(time.Now(), "x", "hi")
	if _, err := st.Append(ctx, sent, ""); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		Message   string `json:"message"`
		SessionID string `json:"sessionId"`
	}
	e := next()
	if err := json.Unmarshal([]byte(e.Data), &got); err != nil || got.Type != "webhook_message" || got.ID != sent.ID || got.Message != "hi" || got.SessionID != "x" {
		t.Fatalf("event %+v, want the appended message %s", e, sent.ID)
	}
	select {
	case <-returned:
		t.Fatal("the handler returned before the message was read: the body was buffered")
	default:
	}

	// The invocation's context ends: the handler ends and the body closes.
	cancel()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still running 10s after its context was cancelled")
	}
	for range events {
	}
	if err := <-readErr; err != nil && !errors.Is(err, io.EOF) {
		t.Errorf("body ended with %v, want EOF", err)
	}
}

// TestRESTStreamRequest: what the handler sees of a REST event — every
// value of repeated headers and query parameters, a base64 body, cookies
// (Set-Cookie) in the prelude's cookies and repeated headers joined.
func TestRESTStreamRequest(t *testing.T) {
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(testutil.Event(t, "apigw-v1-stream.json"), &ev); err != nil {
		t.Fatal(err)
	}
	ev.HTTPMethod = http.MethodPost
	ev.Path = "/api/webhook/stream/close"
	ev.MultiValueQueryStringParameters = map[string][]string{"connectionId": {"c 1"}, "a": {"1", "2"}}
	ev.MultiValueHeaders["Cookie"] = []string{"webhook_relay_token=t0k"}
	ev.MultiValueHeaders["Accept-Language"] = []string{"en", "de"}
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte("\x00bytes")), true

	var got *http.Request
	var gotBody []byte
	h := lambdaproxy.WrapRESTStream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Add("Vary", "Origin")
		w.Header().Add("Vary", "Accept")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "done")
	}))
	resp, err := h(t.Context(), &ev)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/api/webhook/stream/close" || got.URL.Query().Get("connectionId") != "c 1" ||
		strings.Join(got.URL.Query()["a"], ",") != "1,2" || got.Host != "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com" {
		t.Errorf("request %s %s (host %s)", got.Method, got.URL, got.Host)
	}
	if c, err := got.Cookie("webhook_relay_token"); err != nil || c.Value != "t0k" {
		t.Errorf("cookie %v %v", c, err)
	}
	if v := got.Header.Values("Accept-Language"); strings.Join(v, ",") != "en,de" {
		t.Errorf("Accept-Language %q", v)
	}
	if string(gotBody) != "\x00bytes" {
		t.Errorf("body %q, want the decoded base64", gotBody)
	}
	p := readPrelude(t, bufio.NewReader(bytes.NewReader(raw)))
	if p.StatusCode != http.StatusAccepted || p.Headers["Vary"] != "Origin,Accept" || strings.Join(p.Cookies, ";") != "a=1;b=2" || p.Headers["Set-Cookie"] != "" {
		t.Errorf("prelude %+v", p)
	}
	if !bytes.HasSuffix(raw, []byte("\x00\x00\x00\x00\x00\x00\x00\x00done")) {
		t.Errorf("stream %q, want the body after the prelude", raw)
	}

	// A handler that writes nothing answers 200 with an empty body.
	h = lambdaproxy.WrapRESTStream(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	resp, err = h(t.Context(), &ev)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp)
	if p := readPrelude(t, bufio.NewReader(bytes.NewReader(raw))); p.StatusCode != 200 || !bytes.HasSuffix(raw, make([]byte, 8)) {
		t.Errorf("empty answer: %q", raw)
	}
}

func TestStreamRejectsUnknownEvents(t *testing.T) {
	h := lambdaproxy.Stream(http.NotFoundHandler())
	for _, ev := range []string{`not json`, `{}`, `{"version":"1.0"}`, `{"Records":[]}`} {
		if _, err := h(t.Context(), json.RawMessage(ev)); err == nil {
			t.Errorf("event %s: want an error", ev)
		}
	}
}
