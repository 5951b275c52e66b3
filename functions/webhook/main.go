// Command webhook is the WebhookFunction: POST and GET /api/webhook behind
// API Gateway (REST or HTTP API), and the chat page at / (routed there by
// the REST API only). Wiring only; the logic is in internal/.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/webhook-relay/webhook-relay/internal/chatpage"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
)

func main() {
	cfg, st, log := lambdaproxy.Boot(config.Webhook)
	// Metrics ride in the request log lines (EMF): no agent, no API call.
	emf := metrics.EMF{Function: os.Getenv("AWS_LAMBDA_FUNCTION_NAME")}
	h := ingest.New(st, cfg, ingest.Options{Logger: log, RequestID: lambdaproxy.RequestID, Metrics: emf})
	lambda.Start(lambdaproxy.APIGateway(lambdaproxy.Recover(chatpage.WithPage(h), log)))
}
