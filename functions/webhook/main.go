// Command webhook is the WebhookFunction: POST and GET /api/webhook behind
// API Gateway (REST or HTTP API). Wiring only; the logic is in internal/.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
)

func main() {
	cfg, st, log := lambdaproxy.Boot(config.Webhook)
	h := ingest.New(st, cfg, ingest.Options{Logger: log, RequestID: lambdaproxy.RequestID})
	lambda.Start(lambdaproxy.APIGateway(lambdaproxy.Recover(h, log)))
}
