package lambdaemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// serve serves h on 127.0.0.1 for the length of the test.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// openStream asks srv for the stream function's stream; the headers must
// come while the function is still held at its gate.
func openStream(t *testing.T, srv *httptest.Server) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/webhook/stream", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("the response headers did not come before the function finished: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readProgressively reads the stream function's body: its first chunk
// before g opens, the rest after.
func readProgressively(t *testing.T, resp *http.Response, g *gate) {
	t.Helper()
	first, err := readWithin(t, resp.Body, 5*time.Second, "first chunk over HTTP before the gate opens (is the stream buffered?)")
	if first != "a" || err != nil {
		t.Fatalf("first read = %q, %v; want \"a\"", first, err)
	}
	g.waitArrival(t)
	g.open()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "b" {
		t.Fatalf("rest = %q, %v; want \"b\"", rest, err)
	}
}

func TestFunctionURLHandlerStreamsProgressively(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", withGate(g))
	srv := serve(t, e.FunctionURLHandler())

	resp := openStream(t, srv)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Stream-Test") != "yes" ||
		resp.Header.Get("Set-Cookie") != "s=1" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("status %d, header %v", resp.StatusCode, resp.Header)
	}
	if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Errorf("TransferEncoding = %q, want chunked", resp.TransferEncoding)
	}
	readProgressively(t, resp, g)
}

// A client that disconnects does not stop the function, as on AWS: it waits
// on at the (shut) gate and keeps its process, so the next request waits
// until the gate opens, and is then served by the same process.
func TestFunctionURLHandlerClientDisconnect(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", withGate(g)) // one process
	srv := serve(t, e.FunctionURLHandler())
	pid := echoPID(t, e)

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/stream", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := readWithin(t, resp.Body, 5*time.Second, "first chunk"); s != "a" || err != nil {
		t.Fatalf("first read = %q, %v", s, err)
	}
	id := g.waitArrival(t)
	cancel() // the client leaves while the function waits at the gate
	resp.Body.Close()

	type result struct {
		status int
		pid    int
		err    error
	}
	next := make(chan result, 1)
	go func() {
		ctx2, cancel2 := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel2()
		req2, _ := http.NewRequestWithContext(ctx2, http.MethodGet, srv.URL+"/echo", nil)
		resp2, err := srv.Client().Do(req2)
		if err != nil {
			next <- result{err: err}
			return
		}
		defer resp2.Body.Close()
		var ec struct {
			PID int `json:"pid"`
		}
		err = json.NewDecoder(resp2.Body).Decode(&ec)
		next <- result{resp2.StatusCode, ec.PID, err}
	}()
	select {
	case r := <-next:
		t.Fatalf("the request after a disconnect was served (%+v) while the first function still waited at the gate: was it stopped?", r)
	case <-time.After(300 * time.Millisecond):
	}
	g.open()
	select {
	case r := <-next:
		if r.err != nil || r.status != http.StatusOK || r.pid != pid {
			t.Errorf("the request after a disconnect: status %d, pid %d (want %d), %v", r.status, r.pid, pid, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request after a disconnect was never served")
	}
	rec := waitRecord(t, e, id, 5*time.Second)
	if !rec.ClientGone || rec.Dropped != 1 || rec.Error != "" {
		t.Errorf("record %+v, want the client gone, 1 byte (\"b\") dropped, no error", rec)
	}
}

func TestFunctionURLHandlerEvent(t *testing.T) {
	e := start(t, "streamfn", nil)
	srv := serve(t, e.FunctionURLHandler())

	body := []byte{0, 1, 2, 0xff, 'x'}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/echo?x=1&x=2&y=%20z", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Custom", "A")
	req.Header.Add("Cookie", "c1=v1; c2=v2")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Event  events.LambdaFunctionURLRequest `json:"event"`
		Method string                          `json:"method"`
		URL    string                          `json:"url"`
		Body   []byte                          `json:"body"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	ev := got.Event
	if ev.Version != "2.0" || ev.RawPath != "/echo" || ev.RawQueryString != "x=1&x=2&y=%20z" {
		t.Errorf("version, rawPath, rawQueryString = %q, %q, %q", ev.Version, ev.RawPath, ev.RawQueryString)
	}
	if ev.QueryStringParameters["x"] != "1,2" || ev.QueryStringParameters["y"] != " z" {
		t.Errorf("queryStringParameters = %v", ev.QueryStringParameters)
	}
	if ev.Headers["x-custom"] != "A" || ev.Headers["content-type"] != "application/octet-stream" || ev.Headers["cookie"] != "" {
		t.Errorf("headers = %v", ev.Headers)
	}
	if !slices.Equal(ev.Cookies, []string{"c1=v1", "c2=v2"}) {
		t.Errorf("cookies = %q", ev.Cookies)
	}
	if !ev.IsBase64Encoded {
		t.Error("a binary body is not base64-encoded")
	}
	h := ev.RequestContext.HTTP
	if h.Method != "POST" || h.Path != "/echo" || h.SourceIP != "127.0.0.1" || h.Protocol != "HTTP/1.1" {
		t.Errorf("requestContext.http = %+v", h)
	}
	if d := time.Since(time.UnixMilli(ev.RequestContext.TimeEpoch)); d < 0 || d > time.Minute {
		t.Errorf("requestContext.timeEpoch is %v ago", d)
	}
	// What lambdaurl made of the event:
	if got.Method != "POST" || !bytes.Equal(got.Body, body) || got.URL != "https://"+strings.TrimPrefix(srv.URL, "http://")+"/echo?x=1&x=2&y=%20z" {
		t.Errorf("http.Request in the function: %s %s body %v", got.Method, got.URL, got.Body)
	}
}

func TestAPIGatewayV2Handler(t *testing.T) {
	e := start(t, "bufferedfn", nil)
	srv := serve(t, e.APIGatewayV2Handler())

	t.Run("echo", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/webhook?x=1", strings.NewReader(`{"text":"hi"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Cookie", "sid=7")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Echo") != "1" ||
			!slices.Equal(resp.Header.Values("Set-Cookie"), []string{"a=1; Path=/", "b=2"}) {
			t.Errorf("status %d, header %v", resp.StatusCode, resp.Header)
		}
		var ec echo
		if err := json.NewDecoder(resp.Body).Decode(&ec); err != nil {
			t.Fatal(err)
		}
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(ec.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawPath != "/api/webhook" || ev.RawQueryString != "x=1" ||
			ev.Body != `{"text":"hi"}` || ev.IsBase64Encoded || ev.Headers["content-type"] != "application/json" ||
			!slices.Equal(ev.Cookies, []string{"sid=7"}) || ev.RequestContext.HTTP.Method != "POST" {
			t.Errorf("event = %s", ec.Event)
		}
		if ec.DeadlineInMs < int64(DefaultTimeout/time.Millisecond)-60_000 {
			t.Errorf("time to deadline %dms, want about %v", ec.DeadlineInMs, DefaultTimeout)
		}
	})

	tests := []struct {
		path        string
		status      int
		contentType string
		body        string
	}{
		{"/binary", http.StatusOK, "application/octet-stream", "\x00\x01\x02\xff"},
		{"/raw", http.StatusOK, "application/json", `{"hello":"world"}`},
		{"/error", http.StatusInternalServerError, "application/json", `{"message":"Internal Server Error"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := srv.Client().Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != tt.contentType || string(body) != tt.body {
				t.Errorf("GET %s = %d %q %q; want %d %q %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), body,
					tt.status, tt.contentType, tt.body)
			}
		})
	}
}

func TestAPIGatewayV1Handler(t *testing.T) {
	e := start(t, "bufferedfn", nil)
	srv := serve(t, e.APIGatewayV1Handler())

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/webhook?x=1&x=2", strings.NewReader(`{"text":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !slices.Equal(resp.Header.Values("X-Multi"), []string{"1", "2"}) {
		t.Errorf("status %d, header %v", resp.StatusCode, resp.Header)
	}
	var ec echo
	if err := json.NewDecoder(resp.Body).Decode(&ec); err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(ec.Event, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.HTTPMethod != "POST" || ev.Path != "/api/webhook" || ev.Body != `{"text":"hi"}` || ev.IsBase64Encoded ||
		!slices.Equal(ev.MultiValueQueryStringParameters["x"], []string{"1", "2"}) ||
		ev.Headers["Content-Type"] != "application/json" || ev.RequestContext.Identity.SourceIP != "127.0.0.1" {
		t.Errorf("event = %s", ec.Event)
	}

	resp, err = srv.Client().Get(srv.URL + "/error")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET /error: status %d, want 502", resp.StatusCode)
	}
}

func withEnv(kv ...string) func(*Function) {
	return func(fn *Function) { fn.Env = append(fn.Env, kv...) }
}

// TestAPIGatewayV1StreamHandler: a REST API streaming integration relays
// the prelude's status, headers, multi-valued headers and cookies at once,
// then the body as it comes; the function gets a payload 1.0 event.
func TestAPIGatewayV1StreamHandler(t *testing.T) {
	g := newGate(t)
	e := start(t, "streamfn", func(fn *Function) { withGate(g)(fn); withEnv("STREAMFN_MODE=rest")(fn) })
	srv := serve(t, e.APIGatewayV1StreamHandler(0))

	resp := openStream(t, srv)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Stream-Test") != "yes" ||
		!slices.Equal(resp.Header.Values("X-Multi"), []string{"1", "2"}) ||
		resp.Header.Get("Set-Cookie") != "s=1" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("status %d, header %v", resp.StatusCode, resp.Header)
	}
	readProgressively(t, resp, g)

	echoed, err := srv.Client().Get(srv.URL + "/echo?x=1&x=2")
	if err != nil {
		t.Fatal(err)
	}
	defer echoed.Body.Close()
	var ec struct {
		Event events.APIGatewayProxyRequest `json:"event"`
	}
	if err := json.NewDecoder(echoed.Body).Decode(&ec); err != nil {
		t.Fatal(err)
	}
	if ev := ec.Event; ev.HTTPMethod != "GET" || ev.Path != "/echo" || ev.Resource != "/{proxy+}" ||
		!slices.Equal(ev.MultiValueQueryStringParameters["x"], []string{"1", "2"}) || ev.RequestContext.Identity.SourceIP != "127.0.0.1" {
		t.Errorf("event = %+v", ev)
	}
}

// TestAPIGatewayV1StreamHandlerIdle: a stream that keeps sending outlives
// the idle timeout; one silent for longer is cut, the client sees a broken
// response, and the function runs on to its end.
func TestAPIGatewayV1StreamHandlerIdle(t *testing.T) {
	e := start(t, "streamfn", withEnv("STREAMFN_MODE=rest"))
	srv := serve(t, e.APIGatewayV1StreamHandler(700*time.Millisecond))
	for _, tc := range []struct {
		query string
		body  string
		cut   bool
	}{
		{"n=5&every=300ms", "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n", false}, // 1.2s in all
		{"n=2&every=1500ms", "tick 0\n", true},
	} {
		resp, err := srv.Client().Get(srv.URL + "/ticks?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.body || (err != nil) != tc.cut {
			t.Errorf("%s: body %q, %v; want %q, cut: %v", tc.query, body, err, tc.body, tc.cut)
		}
	}
}

// A function that answers buffered behind a streaming integration breaks
// the stream format: 502.
func TestAPIGatewayV1StreamHandlerBuffered(t *testing.T) {
	e := start(t, "bufferedfn", nil)
	srv := serve(t, e.APIGatewayV1StreamHandler(0))
	resp, err := srv.Client().Get(srv.URL + "/api/webhook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
}
