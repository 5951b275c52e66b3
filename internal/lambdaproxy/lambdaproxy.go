// Package lambdaproxy adapts the relay's http.Handlers to Lambda: API
// Gateway proxy events of either payload version for the webhook function,
// a streamed response to a function URL or a REST API for the stream
// function, and panic recovery for both (a panic in a streaming handler
// would kill the process after answering 200 with a truncated body).
package lambdaproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
)

// APIGateway returns a Lambda handler that serves h for API Gateway REST
// (payload 1.0) and HTTP API (payload 2.0) proxy events, detecting the
// version per event, so one function works behind either.
func APIGateway(h http.Handler) func(context.Context, json.RawMessage) (any, error) {
	v1, v2 := httpadapter.New(h), httpadapter.NewV2(h)
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("decode API Gateway event: %w", err)
		}
		if probe.Version == "2.0" {
			var ev events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("decode API Gateway v2 event: %w", err)
			}
			return v2.ProxyWithContext(ctx, ev)
		}
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("decode API Gateway v1 event: %w", err)
		}
		return v1.ProxyWithContext(ctx, ev)
	}
}

// RequestID is the Lambda request id of the invocation serving r, or "".
func RequestID(r *http.Request) string {
	if lc, ok := lambdacontext.FromContext(r.Context()); ok {
		return lc.AwsRequestID
	}
	return ""
}

// Recover turns a panic in h into a logged error and, when nothing was
// written yet, a JSON 500; the process lives on.
func Recover(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &tracking{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					return
				}
				log.LogAttrs(r.Context(), slog.LevelError, "handler panic",
					slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())),
					slog.String("path", r.URL.Path))
				if !rw.wrote {
					jsonhttp.Error(w, http.StatusInternalServerError, "Internal error.")
				}
			}
		}()
		h.ServeHTTP(rw, r)
	})
}

type tracking struct {
	http.ResponseWriter
	wrote bool
}

func (t *tracking) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *tracking) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *tracking) Unwrap() http.ResponseWriter { return t.ResponseWriter }
