package dynamotest

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestMain(m *testing.M) { Main(m) }

func TestEndpointListTables(t *testing.T) {
	ep := Endpoint(t)
	if !strings.HasPrefix(ep, "http://127.0.0.1:") && !strings.HasPrefix(ep, "http://localhost:") {
		t.Errorf("endpoint %q is not on the loopback interface", ep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := Client(t, ep)
	if _, err := c.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables on %s: %v", ep, err)
	}

	table := TableName(t)
	createTable(ctx, t, c, table)
	t.Cleanup(func() {
		_, _ = c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	// Every page: a DynamoDB Local shared by a whole run holds hundreds of
	// tables, and one page lists 100.
	var names []string
	for p := dynamodb.NewListTablesPaginator(c, &dynamodb.ListTablesInput{}); p.HasMorePages(); {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListTables: %v", err)
		}
		names = append(names, out.TableNames...)
	}
	if !slices.Contains(names, table) {
		t.Fatalf("ListTables (%d tables) is missing %q", len(names), table)
	}
	putItem(ctx, t, c, table, "k1")
	if !hasItem(ctx, t, c, table, "k1") {
		t.Fatal("item k1 not found right after PutItem")
	}
}

func TestTableName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)
	for _, name := range []string{"plain", "with space/and slash", "ünïcødé ✓", strings.Repeat("x", 400), ""} {
		t.Run(name, func(t *testing.T) {
			a, b := TableName(t), TableName(t)
			if a == b {
				t.Errorf("two calls gave the same name %q", a)
			}
			for _, n := range []string{a, b} {
				if !valid.MatchString(n) {
					t.Errorf("TableName = %q (len %d): not a valid DynamoDB table name", n, len(n))
				}
			}
		})
	}
}

func TestClientRegionAndCredentials(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	c := Client(t, "http://127.0.0.1:1")
	if got := c.Options().Region; got != "us-east-1" {
		t.Errorf("default region = %q, want us-east-1", got)
	}
	creds, err := c.Options().Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "dummy" || creds.SecretAccessKey != "dummy" {
		t.Errorf("default credentials = %q/%q, %v; want dummy/dummy", creds.AccessKeyID, creds.SecretAccessKey, err)
	}
	if got := aws.ToString(c.Options().BaseEndpoint); got != "http://127.0.0.1:1" {
		t.Errorf("BaseEndpoint = %q", got)
	}

	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLOCAL")
	if got := Client(t, "http://127.0.0.1:1").Options().Region; got != "eu-west-1" {
		t.Errorf("region from AWS_DEFAULT_REGION = %q, want eu-west-1", got)
	}
	t.Setenv("AWS_REGION", "ap-south-1")
	c = Client(t, "http://127.0.0.1:1")
	if got := c.Options().Region; got != "ap-south-1" {
		t.Errorf("region from AWS_REGION = %q, want ap-south-1", got)
	}
	if creds, _ := c.Options().Credentials.Retrieve(context.Background()); creds.AccessKeyID != "AKIDLOCAL" {
		t.Errorf("access key = %q, want AKIDLOCAL from the environment", creds.AccessKeyID)
	}
}

// TestStartKillRestart proves the fault-test helper: data written before a crash is
// there after Restart, on the same endpoint.
func TestStartKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own DynamoDB Local twice; skipped with -short")
	}
	p := Start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := Client(t, p.Endpoint(), func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	table := TableName(t)
	createTable(ctx, t, c, table)
	putItem(ctx, t, c, table, "before-crash")

	p.Kill()
	if _, err := c.ListTables(ctx, &dynamodb.ListTablesInput{}); err == nil {
		t.Fatal("ListTables succeeded while DynamoDB Local was killed")
	}

	p.Restart()
	if !hasItem(ctx, t, c, table, "before-crash") {
		t.Fatal("item written before the crash is gone after Restart")
	}
	p.Stop()
	if _, err := c.ListTables(ctx, &dynamodb.ListTablesInput{}); err == nil {
		t.Fatal("ListTables succeeded after Stop")
	}
}

func createTable(ctx context.Context, t *testing.T, c *dynamodb.Client, table string) {
	t.Helper()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable %s: %v", table, err)
	}
}

func putItem(ctx context.Context, t *testing.T, c *dynamodb.Client, table, pk string) {
	t.Helper()
	_, err := c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item:      map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}},
	})
	if err != nil {
		t.Fatalf("PutItem %s: %v", pk, err)
	}
}

func hasItem(ctx context.Context, t *testing.T, c *dynamodb.Client, table, pk string) bool {
	t.Helper()
	out, err := c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem %s: %v", pk, err)
	}
	return out.Item != nil
}
