// Command stream is the StreamFunction: GET /api/webhook/stream as Server-Sent
// Events through a function URL with InvokeMode RESPONSE_STREAM. Build with
// -tags lambda.norpc. Wiring only; the logic is in internal/.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambdaurl"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/lambdaproxy"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.Load(config.Stream, os.Getenv)
	if err != nil {
		log.Error("bad configuration", "error", err.Error())
		os.Exit(1)
	}
	st, err := dynamostore.Open(context.Background(), cfg.DynamoDBEndpoint, cfg.TableName, false, dynamostore.Options{TTL: cfg.MessageTTL})
	if err != nil {
		log.Error("cannot open the message store", "table", cfg.TableName, "error", err.Error())
		os.Exit(1)
	}
	h := stream.New(st, cfg, stream.Options{Logger: log})
	lambdaurl.Start(lambdaproxy.Recover(h, log))
}
