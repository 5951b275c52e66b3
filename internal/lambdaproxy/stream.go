package lambdaproxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

// Stream returns a Lambda handler that serves h with a streamed response to
// either front the stream function has: a function URL with InvokeMode
// RESPONSE_STREAM (payload 2.0, served by lambdaurl), or an API Gateway REST
// API whose Lambda proxy integration has ResponseTransferMode STREAM
// (payload 1.0), told apart per event. Build with -tags lambda.norpc.
func Stream(h http.Handler) func(context.Context, json.RawMessage) (io.Reader, error) {
	viaURL, viaREST := lambdaurl.Wrap(h), WrapRESTStream(h)
	return func(ctx context.Context, raw json.RawMessage) (io.Reader, error) {
		var probe struct {
			Version    string `json:"version"`
			HTTPMethod string `json:"httpMethod"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("decode stream event: %w", err)
		}
		switch {
		case probe.HTTPMethod != "":
			var ev events.APIGatewayProxyRequest
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("decode API Gateway REST event: %w", err)
			}
			return viaREST(ctx, &ev)
		case probe.Version == "2.0":
			var ev events.LambdaFunctionURLRequest
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("decode function URL event: %w", err)
			}
			return viaURL(ctx, &ev)
		}
		return nil, errors.New("decode stream event: neither a function URL (version 2.0) nor an API Gateway REST (httpMethod) event")
	}
}

// WrapRESTStream is lambdaurl.Wrap for an API Gateway REST API's streaming
// Lambda proxy integration: the request comes as a payload 1.0 event, and
// the response is the integration's stream (a JSON prelude with the status
// and headers, eight NUL bytes, then the body as the handler writes it).
// Writes go straight to Lambda, unbuffered: there is nothing to flush, and
// http.ResponseController's Flush answers http.ErrNotSupported.
func WrapRESTStream(h http.Handler) func(context.Context, *events.APIGatewayProxyRequest) (*events.APIGatewayProxyStreamingResponse, error) {
	return func(ctx context.Context, ev *events.APIGatewayProxyRequest) (*events.APIGatewayProxyStreamingResponse, error) {
		req, err := restRequest(ctx, ev)
		if err != nil {
			return nil, err
		}
		ready := make(chan restHeader) // the status and headers: the prelude can go
		pr, pw := io.Pipe()
		rw := &restWriter{w: pw, ready: ready}
		go func() {
			defer close(ready)
			defer pw.Close()
			defer rw.WriteHeader(http.StatusOK) // a handler that wrote nothing: 200, empty
			h.ServeHTTP(rw, req)
		}()
		hd, ok := <-ready
		if !ok {
			return nil, errors.New("REST stream: the handler ended without a response")
		}
		resp := &events.APIGatewayProxyStreamingResponse{StatusCode: hd.code, Body: pr}
		for k, vs := range hd.header {
			if k == "Set-Cookie" {
				resp.Cookies = vs
				continue
			}
			if resp.Headers == nil {
				resp.Headers = make(map[string]string, len(hd.header))
			}
			resp.Headers[k] = strings.Join(vs, ",")
		}
		return resp, nil
	}
}

// restRequest makes the http.Request of a REST proxy event. The path is the
// event's path, without the stage, as httpadapter has it for the webhook
// function.
func restRequest(ctx context.Context, ev *events.APIGatewayProxyRequest) (*http.Request, error) {
	var body io.Reader = strings.NewReader(ev.Body)
	if ev.IsBase64Encoded {
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	u := url.URL{Scheme: "https", Host: ev.RequestContext.DomainName, Path: ev.Path}
	q := url.Values(ev.MultiValueQueryStringParameters)
	if len(q) == 0 && len(ev.QueryStringParameters) > 0 {
		q = url.Values{}
		for k, v := range ev.QueryStringParameters {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, ev.HTTPMethod, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("REST stream request: %w", err)
	}
	if len(ev.MultiValueHeaders) > 0 {
		for k, vs := range ev.MultiValueHeaders {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	} else {
		for k, v := range ev.Headers {
			req.Header.Set(k, v)
		}
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
	// The address API Gateway saw, never a header: clientip.Source reads it.
	req.RemoteAddr = ev.RequestContext.Identity.SourceIP
	return req, nil
}

type restHeader struct {
	code   int
	header http.Header
}

// restWriter hands the status and headers over once, at the first write or
// WriteHeader, then writes the body into the response stream.
type restWriter struct {
	w      io.Writer
	header http.Header
	once   sync.Once
	ready  chan<- restHeader
}

func (w *restWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *restWriter) WriteHeader(code int) {
	w.once.Do(func() { w.ready <- restHeader{code: code, header: w.Header().Clone()} })
}

func (w *restWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.w.Write(p)
}
