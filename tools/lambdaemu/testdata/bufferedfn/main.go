// Command bufferedfn is a buffered API Gateway Lambda (REST v1 and HTTP API
// v2 payloads) for the tests of package lambdaemu: build it with
// -tags lambda.norpc.
//
// BUFFEREDFN_MODE makes its init fail: "exit" exits before asking for an
// invocation, "init-error" reports to /runtime/init/error first, "hang"
// never asks.
//
// By path: /error returns an error, /panic panics, /sleep outlives its
// deadline, /binary answers with a base64 body, /raw answers without a
// statusCode; anything else echoes the event and its Lambda context.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func main() {
	switch os.Getenv("BUFFEREDFN_MODE") {
	case "exit":
		fmt.Fprintln(os.Stderr, "bufferedfn: TABLE_NAME is not set")
		os.Exit(3)
	case "init-error":
		body := `{"errorMessage":"TABLE_NAME is not set","errorType":"ConfigError"}`
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
		req.Header.Set("Lambda-Runtime-Function-Error-Type", "ConfigError")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	case "hang":
		time.Sleep(time.Hour)
	}
	lambda.Start(handle)
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Version string `json:"version"`
		RawPath string `json:"rawPath"`
		Path    string `json:"path"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, err
	}
	path := probe.RawPath
	if probe.Version != "2.0" {
		path = probe.Path
	}
	switch path {
	case "/error":
		return nil, errors.New("handler failed on purpose")
	case "/panic":
		panic("bufferedfn: panic on purpose")
	case "/sleep":
		<-ctx.Done()
		time.Sleep(time.Minute)
	case "/raw":
		return map[string]string{"hello": "world"}, nil
	case "/binary":
		return events.APIGatewayV2HTTPResponse{
			StatusCode:      http.StatusOK,
			Headers:         map[string]string{"Content-Type": "application/octet-stream"},
			Body:            base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255}),
			IsBase64Encoded: true,
		}, nil
	}

	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	echo, err := json.Marshal(map[string]any{
		"event":        raw,
		"requestId":    lc.AwsRequestID,
		"functionArn":  lc.InvokedFunctionArn,
		"functionName": lambdacontext.FunctionName,
		"deadlineInMs": time.Until(deadline).Milliseconds(),
		"pid":          os.Getpid(),
	})
	if err != nil {
		return nil, err
	}
	if probe.Version != "2.0" {
		return events.APIGatewayProxyResponse{
			StatusCode:        http.StatusAccepted,
			Headers:           map[string]string{"Content-Type": "application/json", "X-Multi": "ignored"},
			MultiValueHeaders: map[string][]string{"X-Multi": {"1", "2"}},
			Body:              string(echo),
		}, nil
	}
	return events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusCreated,
		Headers:    map[string]string{"Content-Type": "application/json", "X-Echo": "1"},
		Cookies:    []string{"a=1; Path=/", "b=2"},
		Body:       string(echo),
	}, nil
}
