// Command webhook is the WebhookFunction: POST and GET /api/webhook behind
// API Gateway (REST or HTTP API). Wiring only; the logic is in internal/.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.Load(config.Webhook, os.Getenv)
	if err != nil {
		log.Error("bad configuration", "error", err.Error())
		os.Exit(1)
	}
	st, err := dynamostore.Open(context.Background(), cfg.DynamoDBEndpoint, cfg.TableName, false, dynamostore.Options{TTL: cfg.MessageTTL})
	if err != nil {
		log.Error("cannot open the message store", "table", cfg.TableName, "error", err.Error())
		os.Exit(1)
	}
	h := ingest.New(st, cfg, ingest.Options{Logger: log, RequestID: lambdaproxy.RequestID})
	lambda.Start(lambdaproxy.APIGateway(lambdaproxy.Recover(h, log)))
}
