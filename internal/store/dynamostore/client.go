package dynamostore

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webhook-relay/webhook-relay/internal/store"
)

// NewClient builds a DynamoDB client from the SDK's default chain. With an
// endpoint (DynamoDB Local), it never probes the instance-metadata service,
// and uses static dummy credentials and us-east-1 unless the environment
// names others: DynamoDB Local keeps one database per access key and region.
func NewClient(ctx context.Context, endpoint string) (*dynamodb.Client, error) {
	var opts []func(*config.LoadOptions) error
	if endpoint != "" {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
		if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("dummy", "dummy", "")))
		}
		if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
			opts = append(opts, config.WithRegion("us-east-1"))
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// Open connects to DynamoDB (at endpoint, when given) and opens the store
// on table. With create, a missing table is created first (local use; on
// AWS the template owns the table).
func Open(ctx context.Context, endpoint, table string, create bool, opts store.Options) (*Store, error) {
	client, err := NewClient(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	if create {
		if err := CreateTable(ctx, client, table); err != nil {
			return nil, err
		}
	}
	return New(ctx, client, table, opts)
}
