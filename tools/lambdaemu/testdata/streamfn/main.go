// Command streamfn is a RESPONSE_STREAM function URL Lambda for the tests of
// package lambdaemu: build it with -tags lambda.norpc.
//
// By path:
//   - /echo: the event and the http.Request that lambdaurl made of it, and
//     the process id, as JSON.
//   - /panic: panics in the handler, which kills the process.
//   - /ticks?n=N&every=D: writes "tick <i>" lines, N of them D apart,
//     whatever becomes of the client, then GETs $REPORT_URL with its request
//     id, the number of ticks, of failed writes and flushes (writeErrors),
//     and its context's error (ctxErr, "<nil>" if none), then writes "done".
//   - anything else: status 202, writes "a", flushes, waits until an HTTP GET
//     of $GATE_URL?id=<request id> returns, then writes "b".
//
// With STREAMFN_MODE=trailer it is instead a plain handler whose streamed
// body fails after "partial", which the runtime reports in HTTP trailers.
// With STREAMFN_MODE=rest it streams as behind an API Gateway REST API
// (events.APIGatewayProxyStreamingResponse), by path:
//   - /echo: the event, as JSON.
//   - /ticks?n=N&every=D: "tick <i>" lines, N of them D apart.
//   - anything else: status 202, a multi-valued header and a cookie, "a",
//     the wait for $GATE_URL as above, then "b".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

func main() {
	if os.Getenv("STREAMFN_MODE") == "trailer" {
		lambda.Start(func(*events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
			return &events.LambdaFunctionURLStreamingResponse{
				StatusCode: http.StatusOK,
				Headers:    map[string]string{"Content-Type": "text/plain"},
				Body:       io.MultiReader(strings.NewReader("partial"), failingReader{}),
			}, nil
		})
		return
	}
	if os.Getenv("STREAMFN_MODE") == "rest" {
		lambda.Start(serveREST)
		return
	}
	lambdaurl.Start(http.HandlerFunc(serve))
}

func serveREST(ctx context.Context, ev events.APIGatewayProxyRequest) (*events.APIGatewayProxyStreamingResponse, error) {
	pr, pw := io.Pipe()
	resp := &events.APIGatewayProxyStreamingResponse{
		StatusCode: http.StatusOK,
		Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8"},
		Body:       pr,
	}
	var write func()
	switch ev.Path {
	case "/echo":
		resp.Headers["Content-Type"] = "application/json"
		write = func() { _ = json.NewEncoder(pw).Encode(map[string]any{"event": ev, "pid": os.Getpid()}) }
	case "/ticks":
		n, _ := strconv.Atoi(ev.QueryStringParameters["n"])
		every, _ := time.ParseDuration(ev.QueryStringParameters["every"])
		write = func() {
			for i := range n {
				if i > 0 {
					time.Sleep(every)
				}
				fmt.Fprintf(pw, "tick %d\n", i)
			}
		}
	default:
		resp.StatusCode = http.StatusAccepted
		resp.Headers["X-Stream-Test"] = "yes"
		resp.MultiValueHeaders = map[string][]string{"X-Multi": {"1", "2"}}
		resp.Cookies = []string{"s=1"}
		write = func() {
			_, _ = io.WriteString(pw, "a")
			waitGate(ctx)
			_, _ = io.WriteString(pw, "b")
		}
	}
	go func() {
		defer pw.Close()
		write()
	}()
	return resp, nil
}

// waitGate returns once an HTTP GET of $GATE_URL?id=<request id> has
// returned (at once without GATE_URL).
func waitGate(ctx context.Context) {
	gate := os.Getenv("GATE_URL")
	if gate == "" {
		return
	}
	id := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		id = lc.AwsRequestID
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gate+"?id="+url.QueryEscape(id), nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("database went away") }

func serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/echo":
		body, _ := io.ReadAll(r.Body)
		ev, _ := lambdaurl.RequestFromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"event":  ev,
			"method": r.Method,
			"url":    r.URL.String(),
			"body":   body,
			"header": r.Header,
			"pid":    os.Getpid(),
		})
		return
	case "/panic":
		panic("streamfn: panic on purpose")
	case "/ticks":
		ticks(w, r)
		return
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Stream-Test", "yes")
	http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "a")
	if err := http.NewResponseController(w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	waitGate(r.Context())
	_, _ = io.WriteString(w, "b")
}

// ticks runs for its planned time, however the client fares, and tells
// $REPORT_URL whether it noticed anything.
func ticks(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	every, _ := time.ParseDuration(r.URL.Query().Get("every"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	failed := 0
	for i := range n {
		if i > 0 {
			time.Sleep(every)
		}
		if _, err := fmt.Fprintf(w, "tick %d\n", i); err != nil {
			failed++
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			failed++
		}
	}
	if u := os.Getenv("REPORT_URL"); u != "" {
		id := ""
		if lc, ok := lambdacontext.FromContext(r.Context()); ok {
			id = lc.AwsRequestID
		}
		q := url.Values{
			"id":          {id},
			"ticks":       {strconv.Itoa(n)},
			"writeErrors": {strconv.Itoa(failed)},
			"ctxErr":      {fmt.Sprint(r.Context().Err())},
		}
		// Not with r's context: that the report gets out is the point.
		if resp, err := http.Get(u + "?" + q.Encode()); err == nil {
			resp.Body.Close()
		}
	}
	_, _ = io.WriteString(w, "done\n")
}
