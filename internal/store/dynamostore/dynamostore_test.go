package dynamostore_test

import (
	"context"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

func TestConformanceDynamoDBLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		return storetest.NewDynamo(t, o, nil)
	})
}

// The delivery guarantees again, on a DynamoDB that throttles, loses
// replies, answers 500 after applying, and holds writers for seconds.
func TestConformanceDynamoDBLocalUnderFaults(t *testing.T) {
	b := storetest.FaultyBackend(4 * time.Second)
	storetest.Run(t, storetest.Factory(b.New), storetest.UnderFaults...)
}

func TestCreateTableIdempotent(t *testing.T) {
	client := dynamotest.Client(t, dynamotest.Endpoint(t))
	table := dynamotest.TableName(t)
	ctx := context.Background()
	for i := range 2 {
		if err := dynamostore.CreateTable(ctx, client, table); err != nil {
			t.Fatalf("CreateTable #%d: %v", i+1, err)
		}
	}
	s1, err := dynamostore.New(ctx, client, table, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := dynamostore.New(ctx, client, table, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := s1.Epoch(ctx)
	e2, _ := s2.Epoch(ctx)
	if e1 != e2 || e1 == 0 {
		t.Fatalf("epochs %d and %d: want one fixed epoch per table", e1, e2)
	}
}
