package dynamostore

import (
	"context"
	"errors"
	"net"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// attempts learns what every attempt of one call did. The SDK retries
// inside a call and returns only the last attempt's error: a call whose
// first attempt was applied (its reply lost) and whose retries were
// throttled looks like a plain throttle. A write is known not to be
// applied only when every attempt was refused.
type attempts struct{ mayHaveApplied atomic.Bool }

// track is the per-call option that records each attempt into a. It sits
// right after the SDK's retry middleware, so it sees every attempt.
func (a *attempts) track(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("webhook-relay/attempts",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleFinalize(ctx, in)
				if err == nil || !refused(err) {
					a.mayHaveApplied.Store(true)
				}
				return out, md, err
			}), "Retry", middleware.After)
	})
}

// refused reports whether a failed attempt cannot have been applied:
// DynamoDB answered 4xx (throttling, a failed condition, a cancelled
// transaction, a validation error), or the request never left (the
// connection was refused).
func refused(err error) bool {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 && re.HTTPStatusCode() < 500 {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorFault() == smithy.FaultClient {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
