package storetest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
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

// NewFaultyDynamo is NewDynamo with every request of the store going
// through inj, which injects AWS's failure modes on the wire.
func NewFaultyDynamo(t *testing.T, o Options, inj *ddbfault.Injector) *dynamostore.Store {
	t.Helper()
	return newDynamo(t, o, nil, func(do *dynamodb.Options) {
		do.HTTPClient = &http.Client{Transport: inj.Transport(nil)}
		// The SDK's own retry policy, with its backoff capped so that a
		// storm runs in test time (its default waits up to 20 s).
		do.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 100 * time.Millisecond })
	})
}

// FaultyBackend is DynamoDB Local under ddbfault.Weather: every store it
// makes has its own injector with those rules.
func FaultyBackend(heldFor time.Duration) Backend {
	return Backend{"DynamoDBLocalFaults", func(t *testing.T, o Options) Store {
		inj := ddbfault.New(uint64(time.Now().UnixNano()))
		s := NewFaultyDynamo(t, o, inj) // the table is made in fair weather
		inj.Set(ddbfault.Weather(heldFor)...)
		t.Cleanup(func() { t.Logf("faults injected: %+v", inj.Counts()) })
		return s
	}}
}

// NewDynamo returns a DynamoDB store on a new table of the shared DynamoDB
// Local; wrap, when given, wraps the client (to count or break requests).
func NewDynamo(t *testing.T, o Options, wrap func(dynamostore.API) dynamostore.API) *dynamostore.Store {
	t.Helper()
	return newDynamo(t, o, wrap)
}

func newDynamo(t *testing.T, o Options, wrap func(dynamostore.API) dynamostore.API, clientOpts ...func(*dynamodb.Options)) *dynamostore.Store {
	t.Helper()
	client := dynamotest.Client(t, dynamotest.Endpoint(t), clientOpts...)
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
