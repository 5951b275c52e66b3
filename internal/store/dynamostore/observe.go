package dynamostore

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Observed is an API that tells Observe about every call before passing it
// on: the operation's name ("Query", "TransactWriteItems", ...) and its
// input. Tests count requests and the IAM actions they need with it.
type Observed struct {
	API
	Observe func(op string, input any)
}

func (o Observed) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	o.Observe("GetItem", in)
	return o.API.GetItem(ctx, in, opts...)
}

func (o Observed) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	o.Observe("PutItem", in)
	return o.API.PutItem(ctx, in, opts...)
}

func (o Observed) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	o.Observe("UpdateItem", in)
	return o.API.UpdateItem(ctx, in, opts...)
}

func (o Observed) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	o.Observe("DeleteItem", in)
	return o.API.DeleteItem(ctx, in, opts...)
}

func (o Observed) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	o.Observe("Query", in)
	return o.API.Query(ctx, in, opts...)
}

func (o Observed) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	o.Observe("TransactWriteItems", in)
	return o.API.TransactWriteItems(ctx, in, opts...)
}
