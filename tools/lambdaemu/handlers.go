package lambdaemu

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// maxRequestBody is Lambda's limit on a synchronous invocation payload.
const maxRequestBody = 6 << 20

const requestTimeLayout = "02/Jan/2006:15:04:05 -0700"

// FunctionURLHandler serves HTTP requests as a Lambda function URL does:
// each request becomes an events.LambdaFunctionURLRequest (payload 2.0). A
// streamed response (lambdaurl.Start, InvokeMode RESPONSE_STREAM) is relayed
// as it is produced, with a flush after every chunk; a buffered one is
// decoded as an events.LambdaFunctionURLResponse. When the client goes away
// the function is not told, as on AWS: it runs on to the end of its response
// or its timeout, and what it writes is discarded (see the package
// documentation).
func (e *Emulator) FunctionURLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, ok := eventPayload(e, w, r, functionURLEvent, http.StatusBadGateway)
		if !ok {
			return
		}
		e.serveStream(w, r, payload, relay{errStatus: http.StatusBadGateway})
	})
}

// RESTIdleTimeout is how long API Gateway lets a streamed response of a
// regional REST API send nothing before it closes it (edge-optimized: 30 s).
const RESTIdleTimeout = 5 * time.Minute

// APIGatewayV1StreamHandler serves HTTP requests as an API Gateway REST API
// does through a {proxy+} resource whose Lambda proxy integration streams
// (ResponseTransferMode STREAM, the response-streaming-invocations URI):
// each request becomes an events.APIGatewayProxyRequest, as for
// APIGatewayV1Handler, and the function's response stream (a JSON prelude
// with statusCode, headers, multiValueHeaders and cookies, eight NUL bytes,
// the body) is relayed as it is produced. A response that sends nothing for
// idle (RESTIdleTimeout when 0) is cut, as API Gateway cuts an idle stream:
// the client sees a broken response, and the function, not told, runs on.
// A function that does not stream its response gets a 502, as from an
// integration that breaks the stream format.
func (e *Emulator) APIGatewayV1StreamHandler(idle time.Duration) http.Handler {
	if idle <= 0 {
		idle = RESTIdleTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, ok := eventPayload(e, w, r, apiGatewayV1Event, http.StatusBadGateway)
		if !ok {
			return
		}
		e.serveStream(w, r, payload, relay{errStatus: http.StatusBadGateway, rest: true, idle: idle})
	})
}

// APIGatewayV2Handler serves HTTP requests as an API Gateway HTTP API
// ($default route) does: each request becomes an
// events.APIGatewayV2HTTPRequest (payload 2.0), and the response is decoded
// as an events.APIGatewayV2HTTPResponse (isBase64Encoded honoured; a
// response without statusCode is a JSON body, as API Gateway has it).
func (e *Emulator) APIGatewayV2Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, ok := eventPayload(e, w, r, apiGatewayV2Event, http.StatusInternalServerError)
		if !ok {
			return
		}
		// Payload 2.0 responses have the function URL format.
		e.serveStream(w, r, payload, relay{errStatus: http.StatusInternalServerError})
	})
}

// APIGatewayV1Handler serves HTTP requests as an API Gateway REST API with a
// {proxy+} resource does: each request becomes an
// events.APIGatewayProxyRequest, and the response is decoded as an
// events.APIGatewayProxyResponse.
func (e *Emulator) APIGatewayV1Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		payload, ok := eventPayload(e, w, r, apiGatewayV1Event, http.StatusBadGateway)
		if !ok {
			return
		}
		resp, err := e.Invoke(r.Context(), payload)
		if err != nil {
			e.gatewayError(w, r, err, http.StatusBadGateway)
			return
		}
		var pr events.APIGatewayProxyResponse
		if err := json.Unmarshal(resp.Body, &pr); err != nil || pr.StatusCode < 100 || pr.StatusCode > 999 {
			e.gatewayError(w, r, fmt.Errorf("lambdaemu: malformed Lambda proxy response %.200q", resp.Body), http.StatusBadGateway)
			return
		}
		out, err := decodeBody(pr.Body, pr.IsBase64Encoded)
		if err != nil {
			e.gatewayError(w, r, err, http.StatusBadGateway)
			return
		}
		h := w.Header()
		for k, v := range pr.Headers {
			h.Set(k, v)
		}
		for k, vs := range pr.MultiValueHeaders {
			h.Del(k) // multiValueHeaders win over headers
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		w.WriteHeader(pr.StatusCode)
		_, _ = w.Write(out)
	})
}

// eventPayload reads r's body and encodes the event build makes of it; on
// failure it has answered the client with errStatus.
func eventPayload[T any](e *Emulator, w http.ResponseWriter, r *http.Request, build func(*http.Request, []byte, time.Time) T, errStatus int) ([]byte, bool) {
	body, ok := readRequestBody(w, r)
	if !ok {
		return nil, false
	}
	payload, err := json.Marshal(build(r, body, time.Now()))
	if err != nil {
		e.gatewayError(w, r, err, errStatus)
		return nil, false
	}
	return payload, true
}

// relay says how serveStream treats a response.
type relay struct {
	errStatus int           // the answer to a failed invocation
	rest      bool          // a REST API streaming integration, not a function URL
	idle      time.Duration // cut a stream silent for this long; 0: never
}

// serveStream invokes with payload and relays the response progressively.
func (e *Emulator) serveStream(w http.ResponseWriter, r *http.Request, payload []byte, how relay) {
	resp, err := e.InvokeStream(r.Context(), payload)
	if err != nil {
		e.gatewayError(w, r, err, how.errStatus)
		return
	}
	// Closing before the end tells the emulator that the client left; the
	// function runs on regardless. So does the end of r's context, which also
	// makes a blocked Read return.
	defer resp.Body.Close()
	if how.rest && !resp.Streamed {
		e.gatewayError(w, r, fmt.Errorf("lambdaemu: a REST API streaming integration got a buffered response (request %s), not an HTTP integration stream", resp.RequestID), how.errStatus)
		return
	}

	h := w.Header()
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	if how.rest {
		for k, vs := range resp.MultiValueHeaders {
			h.Del(k) // multiValueHeaders win over headers, as for buffered proxy responses
			for _, v := range vs {
				h.Add(k, v)
			}
		}
	}
	for _, c := range resp.Cookies {
		h.Add("Set-Cookie", c)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	flush := func() bool {
		err := rc.Flush()
		return err == nil || errors.Is(err, http.ErrNotSupported)
	}
	if !flush() {
		return
	}
	var idled atomic.Bool
	if how.idle > 0 {
		// Closing the body makes a blocked Read return: the gateway hangs up.
		t := time.AfterFunc(how.idle, func() { idled.Store(true); resp.Body.Close() })
		defer t.Stop()
		resp.Body = resetOnRead{resp.Body, t, how.idle}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && !idled.Load() {
			if _, werr := w.Write(buf[:n]); werr != nil || !flush() {
				return
			}
		}
		if err == io.EOF && !idled.Load() {
			return
		}
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			if idled.Load() {
				e.log.Warn("idle stream cut", "method", r.Method, "path", r.URL.Path, "requestId", resp.RequestID, "idle", how.idle)
			} else {
				e.log.Warn("response stream failed", "method", r.Method, "path", r.URL.Path, "requestId", resp.RequestID, "err", err)
			}
			// The status is gone already: end the response abruptly, so that
			// the client sees a broken stream rather than a complete one.
			panic(http.ErrAbortHandler)
		}
	}
}

// resetOnRead restarts the idle timer whenever bytes arrive.
type resetOnRead struct {
	io.ReadCloser
	t    *time.Timer
	idle time.Duration
}

func (r resetOnRead) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.t.Reset(r.idle)
	}
	return n, err
}

// gatewayError answers for a failed invocation as the gateways do, with a
// JSON message; the cause goes to the log.
func (e *Emulator) gatewayError(w http.ResponseWriter, r *http.Request, err error, functionErrStatus int) {
	if r.Context().Err() != nil && errors.Is(err, context.Cause(r.Context())) {
		return // the client went away
	}
	status, msg := functionErrStatus, "Internal Server Error"
	switch {
	case errors.Is(err, ErrTimeout):
		status, msg = http.StatusGatewayTimeout, "Endpoint request timed out"
	case errors.Is(err, ErrClosed):
		status, msg = http.StatusServiceUnavailable, "Service Unavailable"
	}
	e.log.Warn("invocation failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		status := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": http.StatusText(status)})
		return nil, false
	}
	return body, true
}

func functionURLEvent(r *http.Request, body []byte, now time.Time) events.LambdaFunctionURLRequest {
	headers, cookies := lowerHeaders(r)
	text, b64 := encodeBody(r.Header.Get("Content-Type"), body)
	prefix := domainPrefix(r.Host)
	return events.LambdaFunctionURLRequest{
		Version:               "2.0",
		RawPath:               r.URL.EscapedPath(),
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: joinedQuery(r),
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:    "anonymous",
			RequestID:    newUUID(),
			APIID:        prefix,
			DomainName:   r.Host,
			DomainPrefix: prefix,
			Time:         now.Format(requestTimeLayout),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP(r),
				UserAgent: r.UserAgent(),
			},
		},
		Body:            text,
		IsBase64Encoded: b64,
	}
}

func apiGatewayV2Event(r *http.Request, body []byte, now time.Time) events.APIGatewayV2HTTPRequest {
	headers, cookies := lowerHeaders(r)
	text, b64 := encodeBody(r.Header.Get("Content-Type"), body)
	prefix := domainPrefix(r.Host)
	return events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              "$default",
		RawPath:               r.URL.EscapedPath(),
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: joinedQuery(r),
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    accountID,
			Stage:        "$default",
			RequestID:    newUUID(),
			APIID:        prefix,
			DomainName:   r.Host,
			DomainPrefix: prefix,
			Time:         now.Format(requestTimeLayout),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP(r),
				UserAgent: r.UserAgent(),
			},
		},
		Body:            text,
		IsBase64Encoded: b64,
	}
}

func apiGatewayV1Event(r *http.Request, body []byte, now time.Time) events.APIGatewayProxyRequest {
	mvh := r.Header.Clone()
	mvh.Set("Host", r.Host)
	for k, v := range forwardedHeaders(r) {
		mvh.Set(k, v)
	}
	headers := make(map[string]string, len(mvh))
	for k, vs := range mvh {
		headers[k] = vs[len(vs)-1]
	}
	var qs map[string]string
	var mqs map[string][]string
	if q := r.URL.Query(); len(q) > 0 {
		qs = make(map[string]string, len(q))
		for k, vs := range q {
			qs[k] = vs[len(vs)-1]
		}
		mqs = q
	}
	resource, params := "/{proxy+}", map[string]string{"proxy": strings.TrimPrefix(r.URL.Path, "/")}
	if r.URL.Path == "/" {
		resource, params = "/", nil
	}
	text, b64 := encodeBody(r.Header.Get("Content-Type"), body)
	return events.APIGatewayProxyRequest{
		Resource:                        resource,
		Path:                            r.URL.Path,
		HTTPMethod:                      r.Method,
		Headers:                         headers,
		MultiValueHeaders:               mvh,
		QueryStringParameters:           qs,
		MultiValueQueryStringParameters: mqs,
		PathParameters:                  params,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:         accountID,
			ResourceID:        "lambdaemu",
			Stage:             "local",
			DomainName:        r.Host,
			DomainPrefix:      domainPrefix(r.Host),
			RequestID:         newUUID(),
			ExtendedRequestID: newUUID(),
			Protocol:          r.Proto,
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  sourceIP(r),
				UserAgent: r.UserAgent(),
			},
			ResourcePath:     resource,
			Path:             "/local" + r.URL.Path,
			HTTPMethod:       r.Method,
			RequestTime:      now.Format(requestTimeLayout),
			RequestTimeEpoch: now.UnixMilli(),
			APIID:            domainPrefix(r.Host),
		},
		Body:            text,
		IsBase64Encoded: b64,
	}
}

// lowerHeaders returns the headers of r for a payload 2.0 event: names in
// lower case, repeated values joined with commas, and cookies apart.
func lowerHeaders(r *http.Request) (map[string]string, []string) {
	headers := make(map[string]string, len(r.Header)+5)
	var cookies []string
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		}
		headers[lk] = strings.Join(vs, ",")
	}
	headers["host"] = r.Host
	for k, v := range forwardedHeaders(r) {
		headers[strings.ToLower(k)] = v
	}
	return headers, cookies
}

// forwardedHeaders are the headers the AWS front ends add.
func forwardedHeaders(r *http.Request) map[string]string {
	xff := sourceIP(r)
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	port := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			port = p
		}
	}
	h := map[string]string{
		"X-Forwarded-For":   xff,
		"X-Forwarded-Proto": proto,
		"X-Amzn-Trace-Id":   strings.Split(newTraceID(), ";")[0],
	}
	if port != "" {
		h["X-Forwarded-Port"] = port
	}
	return h
}

func joinedQuery(r *http.Request) map[string]string {
	q := r.URL.Query()
	if len(q) == 0 {
		return nil
	}
	m := make(map[string]string, len(q))
	for k, vs := range q {
		m[k] = strings.Join(vs, ",")
	}
	return m
}

func sourceIP(r *http.Request) string { return hostOnly(r.RemoteAddr) }

func domainPrefix(host string) string {
	prefix, _, _ := strings.Cut(hostOnly(host), ".")
	return prefix
}

// encodeBody returns the body as event text, base64-encoded unless it is
// text (by content type, and valid UTF-8).
func encodeBody(contentType string, body []byte) (string, bool) {
	if len(body) == 0 {
		return "", false
	}
	if isText(contentType) && utf8.Valid(body) {
		return string(body), false
	}
	return base64.StdEncoding.EncodeToString(body), true
}

func isText(contentType string) bool {
	mt := mediaType(contentType)
	switch {
	case mt == "", strings.HasPrefix(mt, "text/"),
		strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/javascript",
		"application/x-www-form-urlencoded", "application/x-ndjson", "application/graphql":
		return true
	}
	return false
}

func decodeBody(body string, isBase64 bool) ([]byte, error) {
	if !isBase64 {
		return []byte(body), nil
	}
	b, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("lambdaemu: response body is not valid base64: %w", err)
	}
	return b, nil
}
