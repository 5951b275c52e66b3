package lambdaproxy

import (
	"context"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"log/slog"
	"os"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
)

// Boot does what both functions do before serving: JSON logs on stdout, the
// component's configuration from the environment, and the DynamoDB store.
// A bad value or an unreachable table stops the process with a log line
// that names it (Lambda reports the init failure).
func Boot(component config.Component) (config.Config, *dynamostore.Store, *slog.Logger) {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.Load(component, os.Getenv)
	if err != nil {
		log.Error("bad configuration", "error", err.Error())
		os.Exit(1)
	}
	st, err := dynamostore.Open(context.Background(), cfg.DynamoDBEndpoint, cfg.TableName, false, store.Options{TTL: cfg.MessageTTL})
	if err != nil {
		log.Error("cannot open the message store", "table", cfg.TableName, "error", err.Error())
		os.Exit(1)
	}
	return cfg, st, log
}
