package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
)

// Backend is a named store factory.
type Backend struct {
	Name string
	New  Factory
}

// Backends are the stores every integration test runs against: the memory
// store and DynamoDB Local (a table of its own per store). Test packages
// using them call dynamotest.Main from TestMain.
func Backends() []Backend {
	return []Backend{
		{"Memory", NewMemory},
		{"DynamoDBLocal", func(t *testing.T, o Options) Store { return NewDynamo(t, o, nil) }},
	}
}

// NewMemory returns a memory store.
func NewMemory(t *testing.T, o Options) Store {
	return memstore.New(o)
}

// NewDynamo returns a DynamoDB store on a new table of the shared DynamoDB
// Local; wrap, when given, wraps the client (to count or break requests).
func NewDynamo(t *testing.T, o Options, wrap func(dynamostore.API) dynamostore.API) *dynamostore.Store {
	t.Helper()
	client := dynamotest.Client(t, dynamotest.Endpoint(t))
	table := dynamotest.TableName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := dynamostore.CreateTable(ctx, client, table); err != nil {
		t.Fatalf("create table %s: %v", table, err)
	}
	var api dynamostore.API = client
	if wrap != nil {
		api = wrap(client)
	}
	s, err := dynamostore.New(ctx, api, table, o)
	if err != nil {
		t.Fatalf("open store on %s: %v", table, err)
	}
	t.Logf("backend: DynamoDB Local table %s", table)
	return s
}
