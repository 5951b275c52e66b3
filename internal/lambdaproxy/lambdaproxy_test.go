package lambdaproxy_test

import (
	"bytes"
	"context"
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
	"github.com/aws/aws-lambda-go/lambdaurl"

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

	t.Run("function URL stream", func(t *testing.T) {
		// Without Recover this panic, in lambdaurl's goroutine, would kill
		// the test binary.
		p := &panicky{}
		h := lambdaurl.Wrap(lambdaproxy.Recover(p, slog.New(slog.DiscardHandler)))
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(testutil.Event(t, "function-url-stream.json"), &ev); err != nil {
			t.Fatal(err)
		}
		resp, err := h(t.Context(), &ev)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 500 || resp.Headers["Content-Type"] != "application/json" || !strings.Contains(string(body), `"success":false`) {
			t.Errorf("panic answered %d %v %q", resp.StatusCode, resp.Headers, body)
		}
		if strings.Contains(string(body), "boom") {
			t.Errorf("the answer leaks the panic: %q", body)
		}
		resp, err = h(t.Context(), &ev)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Errorf("after the panic: %v %v", resp, err)
		}
	})

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

// TestFunctionURLStreamProgressive runs the stream handler as the stream
// function does (lambdaurl.Wrap around Recover) with a function URL event,
// and reads the connected event and then a message appended afterwards from
// the response body while the handler is still running: the body streams,
// it is not buffered until the end.
func TestFunctionURLStreamProgressive(t *testing.T) {
	st := memstore.New(store.Options{})
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"http://localhost:3000"}
	returned := make(chan struct{})
	inner := stream.New(st, cfg, stream.Options{Logger: slog.New(slog.DiscardHandler)})
	h := lambdaurl.Wrap(lambdaproxy.Recover(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		inner.ServeHTTP(w, r)
	}), slog.New(slog.DiscardHandler)))

	var ev events.LambdaFunctionURLRequest
	if err := json.Unmarshal(testutil.Event(t, "function-url-stream.json"), &ev); err != nil {
		t.Fatal(err)
	}
	// A Lambda context: it carries the invocation's deadline.
	ctx, cancel := context.WithTimeout(lambdacontext.NewContext(t.Context(), &lambdacontext.LambdaContext{AwsRequestID: "stream-request"}), 60*time.Second)
	defer cancel()
	resp, err := h(ctx, &ev)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.(io.Closer).Close()
	if resp.StatusCode != 200 || resp.Headers["Content-Type"] != "text/event-stream; charset=utf-8" || resp.Headers["Cache-Control"] != "no-cache" {
		t.Fatalf("prelude %d %v", resp.StatusCode, resp.Headers)
	}
	if got := resp.Headers["Access-Control-Allow-Origin"]; got != "http://localhost:3000" {
		t.Errorf("Access-Control-Allow-Origin %q for the fixture's Origin", got)
	}

	events := make(chan sse.Event)
	readErr := make(chan error, 1)
	go func() {
		rd := sse.NewReader(resp.Body)
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

	// The client leaves (Lambda cancels the invocation): the handler ends
	// and the body closes.
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
