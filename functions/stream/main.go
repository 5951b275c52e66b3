// Command stream is the StreamFunction: GET /api/webhook/stream as Server-Sent
// Events, streamed through a function URL (InvokeMode RESPONSE_STREAM) or an
// API Gateway REST API (ResponseTransferMode STREAM), whichever the event
// comes from. Build with -tags lambda.norpc. Wiring only; the logic is in
// internal/.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

func main() {
	cfg, st, log := lambdaproxy.Boot(config.Stream)
	// Metrics ride in the stream's open and close log lines (EMF).
	emf := metrics.EMF{Function: os.Getenv("AWS_LAMBDA_FUNCTION_NAME")}
	h := stream.New(st, cfg, stream.Options{Logger: log, Metrics: emf})
	lambda.Start(lambdaproxy.Stream(lambdaproxy.Recover(h, log)))
}
