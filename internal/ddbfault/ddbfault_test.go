package ddbfault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
)

func TestMain(m *testing.M) { dynamotest.Main(m) }

// env is a fresh table in DynamoDB Local and a client without faults to check
// what the faulty clients left in it.
type env struct {
	endpoint string
	table    string
	admin    *dynamodb.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	endpoint := dynamotest.Endpoint(t)
	e := &env{endpoint: endpoint, table: dynamotest.TableName(t)}
	e.admin = dynamotest.Client(t, endpoint, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	ctx := context.Background()
	_, err := e.admin.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(e.table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		_, _ = e.admin.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(e.table)})
	})
	return e
}

// client is an SDK client whose requests go through inj's Transport.
// attempts 0 means the SDK's default retries.
func (e *env) client(t *testing.T, inj *ddbfault.Injector, attempts int) *dynamodb.Client {
	return dynamotest.Client(t, e.endpoint, func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: inj.Transport(nil)}
		o.RetryMaxAttempts = attempts
	})
}

// proxyClient is an SDK client talking to DynamoDB Local through
// inj.Handler on a loopback httptest server.
func (e *env) proxyClient(t *testing.T, inj *ddbfault.Injector, attempts int) *dynamodb.Client {
	u, err := url.Parse(e.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(inj.Handler(u)) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("proxy at %s, want loopback", srv.URL)
	}
	return dynamotest.Client(t, srv.URL, func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
		o.RetryMaxAttempts = attempts
	})
}

func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: "0"},
	}
}

func item(pk string) map[string]types.AttributeValue {
	it := key(pk)
	it["v"] = &types.AttributeValueMemberS{Value: "x"}
	return it
}

// put is a PutItem of pk, conditional on the item not existing when cond.
func (e *env) put(c *dynamodb.Client, pk string, cond bool) error {
	in := &dynamodb.PutItemInput{TableName: aws.String(e.table), Item: item(pk)}
	if cond {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	}
	_, err := c.PutItem(context.Background(), in)
	return err
}

// transact writes one item per pk in one TransactWriteItems, each conditional
// on not existing when cond.
func (e *env) transact(c *dynamodb.Client, cond bool, pks ...string) error {
	var items []types.TransactWriteItem
	for _, pk := range pks {
		p := &types.Put{TableName: aws.String(e.table), Item: item(pk)}
		if cond {
			p.ConditionExpression = aws.String("attribute_not_exists(pk)")
		}
		items = append(items, types.TransactWriteItem{Put: p})
	}
	_, err := c.TransactWriteItems(context.Background(), &dynamodb.TransactWriteItemsInput{TransactItems: items})
	return err
}

func (e *env) get(c *dynamodb.Client, pk string) error {
	_, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(e.table), Key: key(pk), ConsistentRead: aws.Bool(true)})
	return err
}

// exists reports whether pk's item is in the table (read without faults).
func (e *env) exists(t *testing.T, pk string) bool {
	t.Helper()
	out, err := e.admin.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(e.table), Key: key(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("GetItem %s: %v", pk, err)
	}
	return out.Item != nil
}

// requireWritten fails unless pk's item exists == want.
func (e *env) requireWritten(t *testing.T, pk string, want bool) {
	t.Helper()
	if got := e.exists(t, pk); got != want {
		t.Fatalf("item %s exists = %v, want %v", pk, got, want)
	}
}

// add is UpdateItem ADD n :1 on pk, returning the new n.
func (e *env) add(c *dynamodb.Client, pk string) (string, error) {
	out, err := c.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                 aws.String(e.table),
		Key:                       key(pk),
		UpdateExpression:          aws.String("ADD n :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	if err != nil {
		return "", err
	}
	return out.Attributes["n"].(*types.AttributeValueMemberN).Value, nil
}

// requireInjectedAPIError checks that err is an HTTP status error response
// carrying an injected request id.
func requireInjectedAPIError(t *testing.T, err error, status int) {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not an HTTP response error", err, err)
	}
	if re.HTTPStatusCode() != status {
		t.Errorf("HTTP status %d, want %d", re.HTTPStatusCode(), status)
	}
	if !strings.HasPrefix(re.ServiceRequestID(), "DDBFAULT") || len(re.ServiceRequestID()) != 52 {
		t.Errorf("request id %q, want the injected DDBFAULT... (52 characters)", re.ServiceRequestID())
	}
}

// requireConnError checks that err is a connection error (no answer decoded)
// wrapping errno, which the SDK's retryer retries.
func requireConnError(t *testing.T, err error, errno syscall.Errno) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		t.Fatalf("error %v decoded as API error %s; want a connection error", err, api.ErrorCode())
	}
	if !errors.Is(err, errno) {
		t.Fatalf("error %v does not wrap %v", err, errno)
	}
	if v := (retry.RetryableConnectionError{}).IsErrorRetryable(err); v != aws.TrueTernary {
		t.Errorf("retry.RetryableConnectionError says %v for %v, want retryable", v, err)
	}
	if !retry.NewStandard().IsErrorRetryable(err) {
		t.Errorf("standard retryer does not retry %v", err)
	}
}

func wantCounts(t *testing.T, inj *ddbfault.Injector, op string, want ddbfault.OpCount) {
	t.Helper()
	if got := inj.Counts()[op]; got != want {
		t.Errorf("Counts()[%s] = %+v, want %+v", op, got, want)
	}
}

// Throttle answers each shape so that the SDK decodes its typed error, and
// the SDK's retryer classifies it as it does the real one; nothing is written.
func TestThrottleShapes(t *testing.T) {
	e := newEnv(t)
	type check func(t *testing.T, err error)
	as := func(target any) check {
		return func(t *testing.T, err error) {
			if !errors.As(err, target) {
				t.Fatalf("error %v (%T), want %T", err, err, target)
			}
		}
	}
	for _, tc := range []struct {
		name      string
		throttle  string
		transact  int // items in a TransactWriteItems; 0: a PutItem
		check     check
		retryable bool
	}{
		{"default", "", 0, as(new(*types.ProvisionedThroughputExceededException)), true},
		{"ProvisionedThroughputExceeded", ddbfault.ProvisionedThroughputExceeded, 0, as(new(*types.ProvisionedThroughputExceededException)), true},
		{"ThrottlingException", ddbfault.ThrottlingException, 0, as(new(*types.ThrottlingException)), true},
		{"RequestLimitExceeded", ddbfault.RequestLimitExceeded, 0, as(new(*types.RequestLimitExceeded)), true},
		{"TransactionCanceled on PutItem falls back", ddbfault.TransactionCanceled, 0, as(new(*types.ProvisionedThroughputExceededException)), true},
		{"ProvisionedThroughputExceeded on a transaction", ddbfault.ProvisionedThroughputExceeded, 2, as(new(*types.ProvisionedThroughputExceededException)), true},
		{"TransactionCanceled", ddbfault.TransactionCanceled, 3, func(t *testing.T, err error) {
			var tce *types.TransactionCanceledException
			if !errors.As(err, &tce) {
				t.Fatalf("error %v (%T), want *types.TransactionCanceledException", err, err)
			}
			if len(tce.CancellationReasons) != 3 {
				t.Fatalf("%d cancellation reasons, want 3 (one per item): %+v", len(tce.CancellationReasons), tce.CancellationReasons)
			}
			for i, r := range tce.CancellationReasons {
				if aws.ToString(r.Code) != "ThrottlingError" || aws.ToString(r.Message) == "" {
					t.Errorf("reason %d = {Code %q, Message %q}, want ThrottlingError with a message", i, aws.ToString(r.Code), aws.ToString(r.Message))
				}
			}
			if !strings.Contains(tce.ErrorMessage(), "[ThrottlingError, ThrottlingError, ThrottlingError]") {
				t.Errorf("message %q does not list the reasons", tce.ErrorMessage())
			}
		}, false}, // the SDK does not retry TransactionCanceledException: the caller must
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := ddbfault.New(1)
			inj.Set(ddbfault.Rule{Kind: ddbfault.Throttle, Throttle: tc.throttle})
			c := e.client(t, inj, 1)
			pk := "throttle#" + tc.name
			var err error
			op := "PutItem"
			if tc.transact > 0 {
				op = "TransactWriteItems"
				var pks []string
				for i := range tc.transact {
					pks = append(pks, fmt.Sprintf("%s#%d", pk, i))
				}
				err = e.transact(c, false, pks...)
				pk = pks[0]
			} else {
				err = e.put(c, pk, false)
			}
			tc.check(t, err)
			requireInjectedAPIError(t, err, http.StatusBadRequest)
			var api smithy.APIError
			if errors.As(err, &api) && api.ErrorMessage() == "" {
				t.Errorf("error %v has no message", err)
			}
			if got := retry.NewStandard().IsErrorRetryable(err); got != tc.retryable {
				t.Errorf("standard retryer retryable = %v, want %v", got, tc.retryable)
			}
			e.requireWritten(t, pk, false)
			wantCounts(t, inj, op, ddbfault.OpCount{Requests: 1, Throttled: 1})
		})
	}
}

// With its default retries the SDK retries through throttling and the write
// lands once.
func TestThrottleRetriedBySDK(t *testing.T) {
	e := newEnv(t)
	inj := ddbfault.New(1)
	inj.Set(ddbfault.Rule{Ops: []string{"PutItem"}, Kind: ddbfault.Throttle, Limit: 2})
	if err := e.put(e.client(t, inj, 0), "retried", true); err != nil {
		t.Fatalf("PutItem after 2 throttles: %v", err)
	}
	e.requireWritten(t, "retried", true)
	wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 3, Throttled: 2})
}

// ApplyThen500 applies the write and answers InternalServerError (HTTP 500).
func TestApplyThen500(t *testing.T) {
	e := newEnv(t)
	for _, op := range []string{"PutItem", "TransactWriteItems"} {
		t.Run(op, func(t *testing.T) {
			inj := ddbfault.New(1)
			inj.Set(ddbfault.Rule{Ops: []string{op}, Kind: ddbfault.ApplyThen500})
			c := e.client(t, inj, 1)
			pk := "500#" + op
			var err error
			if op == "PutItem" {
				err = e.put(c, pk, false)
			} else {
				err = e.transact(c, false, pk, pk+"#2")
				e.requireWritten(t, pk+"#2", true)
			}
			var ise *types.InternalServerError
			if !errors.As(err, &ise) {
				t.Fatalf("error %v (%T), want *types.InternalServerError", err, err)
			}
			requireInjectedAPIError(t, err, http.StatusInternalServerError)
			e.requireWritten(t, pk, true)
			wantCounts(t, inj, op, ddbfault.OpCount{Requests: 1, Applied500: 1})
		})
	}
	// The SDK retries a 500: a non-idempotent write is applied twice.
	t.Run("retried ADD counts twice", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Ops: []string{"UpdateItem"}, Kind: ddbfault.ApplyThen500, Limit: 1})
		n, err := e.add(e.client(t, inj, 0), "500#counter")
		if err != nil {
			t.Fatalf("UpdateItem: %v", err)
		}
		if n != "2" {
			t.Fatalf("counter after one retried ADD = %s, want 2 (applied, 500, applied again)", n)
		}
		wantCounts(t, inj, "UpdateItem", ddbfault.OpCount{Requests: 2, Applied500: 1})
	})
}

// LostReply applies the write, then the call fails with a connection reset
// that the SDK's retryer retries.
func TestLostReply(t *testing.T) {
	e := newEnv(t)
	for _, op := range []string{"PutItem", "TransactWriteItems"} {
		t.Run(op, func(t *testing.T) {
			inj := ddbfault.New(1)
			inj.Set(ddbfault.Rule{Ops: []string{op}, Kind: ddbfault.LostReply})
			c := e.client(t, inj, 1)
			pk := "lost#" + op
			var err error
			if op == "PutItem" {
				err = e.put(c, pk, false)
			} else {
				err = e.transact(c, false, pk)
			}
			requireConnError(t, err, syscall.ECONNRESET)
			e.requireWritten(t, pk, true)
			wantCounts(t, inj, op, ddbfault.OpCount{Requests: 1, LostReplies: 1})
		})
	}
}

// The real-world failure mode: a conditional PutItem whose reply was lost is
// retried by the SDK and then fails its own condition, although it was
// applied. TransactWriteItems differs: the SDK fills in a ClientRequestToken
// once per call, so its own retry is idempotent and succeeds; only a new call
// (the caller's own retry) fails the condition.
func TestLostReplyConditionalWriteRetried(t *testing.T) {
	e := newEnv(t)
	t.Run("PutItem", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Ops: []string{"PutItem"}, Kind: ddbfault.LostReply, Limit: 1})
		err := e.put(e.client(t, inj, 0), "lostcond#put", true)
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Fatalf("error %v (%T), want *types.ConditionalCheckFailedException", err, err)
		}
		e.requireWritten(t, "lostcond#put", true)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 2, LostReplies: 1})
	})
	t.Run("TransactWriteItems SDK retry is idempotent", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.LostReply, Limit: 1})
		if err := e.transact(e.client(t, inj, 0), true, "lostcond#tx", "lostcond#tx-idem"); err != nil {
			t.Fatalf("TransactWriteItems retried by the SDK after a lost reply: %v, want success (same ClientRequestToken)", err)
		}
		e.requireWritten(t, "lostcond#tx", true)
		e.requireWritten(t, "lostcond#tx-idem", true)
		wantCounts(t, inj, "TransactWriteItems", ddbfault.OpCount{Requests: 2, LostReplies: 1})
	})
	t.Run("TransactWriteItems new call", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.LostReply, Limit: 1})
		c := e.client(t, inj, 1)
		requireConnError(t, e.transact(c, true, "lostcond#tx2", "lostcond#tx2-idem"), syscall.ECONNRESET)
		err := e.transact(c, true, "lostcond#tx2", "lostcond#tx2-idem")
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) {
			t.Fatalf("error %v (%T), want *types.TransactionCanceledException", err, err)
		}
		for i, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) != "ConditionalCheckFailed" {
				t.Errorf("reason %d = %q, want ConditionalCheckFailed", i, aws.ToString(r.Code))
			}
		}
		if len(tce.CancellationReasons) != 2 {
			t.Errorf("%d cancellation reasons, want 2", len(tce.CancellationReasons))
		}
		e.requireWritten(t, "lostcond#tx2", true)
		wantCounts(t, inj, "TransactWriteItems", ddbfault.OpCount{Requests: 2, LostReplies: 1})
	})
}

// Outage fails with connection refused and forwards nothing; the SDK retries
// it and gets through when the outage ends.
func TestOutage(t *testing.T) {
	e := newEnv(t)
	t.Run("no retries", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.Outage})
		err := e.put(e.client(t, inj, 1), "outage", false)
		requireConnError(t, err, syscall.ECONNREFUSED)
		e.requireWritten(t, "outage", false)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 1, Outages: 1})
	})
	t.Run("retried until it ends", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.Outage, Limit: 2})
		if err := e.put(e.client(t, inj, 0), "outage#retried", true); err != nil {
			t.Fatalf("PutItem after 2 refused connections: %v", err)
		}
		e.requireWritten(t, "outage#retried", true)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 3, Outages: 2})
	})
}

// Delay holds a request at least that long before acting, and lets go (without
// forwarding) when the caller's context ends.
func TestDelay(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name    string
		rule    ddbfault.Rule
		timeout time.Duration // context timeout of the call; 0: none
		minTime time.Duration
		maxTime time.Duration
		check   func(t *testing.T, err error)
		written bool
		count   ddbfault.OpCount
	}{
		{
			name:    "Pass",
			rule:    ddbfault.Rule{Kind: ddbfault.Pass, Delay: 300 * time.Millisecond},
			minTime: 300 * time.Millisecond, maxTime: 5 * time.Second,
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Fatalf("PutItem: %v", err)
				}
			},
			written: true,
			count:   ddbfault.OpCount{Requests: 1, Delayed: 1},
		},
		{
			name:    "Throttle",
			rule:    ddbfault.Rule{Kind: ddbfault.Throttle, Delay: 200 * time.Millisecond},
			minTime: 200 * time.Millisecond, maxTime: 5 * time.Second,
			check: func(t *testing.T, err error) {
				var pte *types.ProvisionedThroughputExceededException
				if !errors.As(err, &pte) {
					t.Fatalf("error %v, want *types.ProvisionedThroughputExceededException", err)
				}
			},
			count: ddbfault.OpCount{Requests: 1, Throttled: 1, Delayed: 1},
		},
		{
			name:    "context ends while held",
			rule:    ddbfault.Rule{Kind: ddbfault.Pass, Delay: 30 * time.Second},
			timeout: 200 * time.Millisecond,
			minTime: 200 * time.Millisecond, maxTime: 5 * time.Second,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error %v, want context.DeadlineExceeded", err)
				}
			},
			count: ddbfault.OpCount{Requests: 1, Delayed: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := ddbfault.New(1)
			inj.Set(tc.rule)
			c := e.client(t, inj, 1)
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			pk := "delay#" + tc.name
			start := time.Now()
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(e.table), Item: item(pk)})
			took := time.Since(start)
			tc.check(t, err)
			if took < tc.minTime || took > tc.maxTime {
				t.Errorf("call took %v, want %v..%v", took, tc.minTime, tc.maxTime)
			}
			e.requireWritten(t, pk, tc.written)
			wantCounts(t, inj, "PutItem", tc.count)
		})
	}
}

// hits runs n GetItems through a client of inj and reports which were
// throttled. It may run on any goroutine: an unexpected error fails t and
// stops it.
func (e *env) hits(t *testing.T, inj *ddbfault.Injector, n int) []bool {
	t.Helper()
	c := e.client(t, inj, 1)
	out := make([]bool, n)
	for i := range out {
		err := e.get(c, "fraction")
		var pte *types.ProvisionedThroughputExceededException
		switch {
		case err == nil:
		case errors.As(err, &pte):
			out[i] = true
		default:
			t.Errorf("GetItem %d: %v", i, err)
			return out
		}
	}
	return out
}

func countTrue(b []bool) (n int) {
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// Fraction hits about that share of matching requests, reproducibly for a
// seed; Limit caps the hits.
func TestFractionAndLimit(t *testing.T) {
	e := newEnv(t)
	throttle := func(fraction float64, limit int) ddbfault.Rule {
		return ddbfault.Rule{Ops: []string{"GetItem"}, Kind: ddbfault.Throttle, Fraction: fraction, Limit: limit}
	}
	for _, tc := range []struct {
		name     string
		rule     ddbfault.Rule
		n        int
		min, max int
		prefix   int // the first prefix requests must all be hit
	}{
		{"all", throttle(0, 0), 20, 20, 20, 20},
		{"Fraction 1", throttle(1, 0), 20, 20, 20, 20},
		{"Limit 3", throttle(0, 3), 10, 3, 3, 3},
		{"Fraction 0.3", throttle(0.3, 0), 300, 60, 120, 0},
		{"Fraction 0.5 Limit 5", throttle(0.5, 5), 100, 5, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := ddbfault.New(42)
			inj.Set(tc.rule)
			got := e.hits(t, inj, tc.n)
			if n := countTrue(got); n < tc.min || n > tc.max {
				t.Errorf("%d of %d hit, want %d..%d", n, tc.n, tc.min, tc.max)
			}
			if countTrue(got[:tc.prefix]) != tc.prefix {
				t.Errorf("hits %v, want the first %d hit", got, tc.prefix)
			}
			wantCounts(t, inj, "GetItem", ddbfault.OpCount{Requests: int64(tc.n), Throttled: int64(countTrue(got))})
		})
	}
	t.Run("Limit under concurrency", func(t *testing.T) {
		inj := ddbfault.New(42)
		inj.Set(throttle(0, 25))
		var wg sync.WaitGroup
		var hit atomic.Int64
		for range 8 {
			wg.Go(func() { hit.Add(int64(countTrue(e.hits(t, inj, 10)))) })
		}
		wg.Wait()
		if hit.Load() != 25 {
			t.Errorf("%d of 80 concurrent requests hit, want exactly the Limit 25", hit.Load())
		}
		wantCounts(t, inj, "GetItem", ddbfault.OpCount{Requests: 80, Throttled: 25})
	})
	t.Run("reproducible", func(t *testing.T) {
		run := func(seed uint64) string {
			inj := ddbfault.New(seed)
			inj.Set(throttle(0.5, 0))
			return fmt.Sprint(e.hits(t, inj, 64))
		}
		a, b, c := run(7), run(7), run(8)
		if a != b {
			t.Errorf("seed 7 hit\n%s\nthen\n%s", a, b)
		}
		if a == c {
			t.Errorf("seeds 7 and 8 hit the same requests: %s", a)
		}
	})
}

// Ops and Contains choose the requests; the first rule that hits decides;
// Set replaces the rules and Clear removes them.
func TestMatching(t *testing.T) {
	e := newEnv(t)
	inj := ddbfault.New(1)
	c := e.client(t, inj, 1)
	isThrottle := func(err error) bool {
		var pte *types.ProvisionedThroughputExceededException
		return errors.As(err, &pte)
	}

	inj.Set(ddbfault.Rule{Ops: []string{"PutItem", "DeleteItem"}, Contains: `"session#abc"`, Kind: ddbfault.Throttle})
	if err := e.put(c, "session#abc", false); !isThrottle(err) {
		t.Errorf("PutItem session#abc: %v, want throttled", err)
	}
	if err := e.put(c, "session#xyz", false); err != nil {
		t.Errorf("PutItem session#xyz: %v, want it passed", err)
	}
	if err := e.get(c, "session#abc"); err != nil {
		t.Errorf("GetItem session#abc: %v, want it passed (not in Ops)", err)
	}

	// In order: the first PutItem is taken by the Pass rule, the next ones
	// fall through to the Outage rule once its Limit is used up.
	inj.Set(
		ddbfault.Rule{Ops: []string{"PutItem"}, Kind: ddbfault.Pass, Limit: 1},
		ddbfault.Rule{Kind: ddbfault.Outage},
	)
	if err := e.put(c, "order#1", false); err != nil {
		t.Errorf("first PutItem: %v, want passed by the first rule", err)
	}
	if err := e.put(c, "order#2", false); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("second PutItem: %v, want the outage", err)
	}
	if err := e.get(c, "order#1"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GetItem: %v, want the outage (empty Ops: every operation)", err)
	}

	inj.Set(ddbfault.Rule{Ops: []string{"GetItem"}, Kind: ddbfault.Throttle})
	if err := e.put(c, "order#3", false); err != nil {
		t.Errorf("PutItem after Set replaced the rules: %v", err)
	}
	inj.Clear()
	if err := e.get(c, "order#3"); err != nil {
		t.Errorf("GetItem after Clear: %v", err)
	}
}

// Counts counts requests and faults per operation; ResetCounts zeroes them.
func TestCounts(t *testing.T) {
	e := newEnv(t)
	inj := ddbfault.New(1)
	inj.Set(
		ddbfault.Rule{Ops: []string{"GetItem"}, Kind: ddbfault.Throttle, Limit: 1},
		ddbfault.Rule{Ops: []string{"PutItem"}, Kind: ddbfault.LostReply, Limit: 1},
		ddbfault.Rule{Ops: []string{"UpdateItem"}, Kind: ddbfault.ApplyThen500, Limit: 1},
		ddbfault.Rule{Ops: []string{"DeleteItem"}, Kind: ddbfault.Outage, Limit: 1},
		ddbfault.Rule{Ops: []string{"Query"}, Kind: ddbfault.Pass, Delay: 10 * time.Millisecond, Limit: 1},
	)
	c := e.client(t, inj, 1)
	ctx := context.Background()
	for range 2 {
		_ = e.get(c, "counts")
		_ = e.put(c, "counts", false)
		_, _ = e.add(c, "counts")
		_, _ = c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(e.table), Key: key("nothing")})
		if _, err := c.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(e.table),
			KeyConditionExpression:    aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "counts"}},
		}); err != nil {
			t.Fatalf("Query: %v", err)
		}
	}
	want := map[string]ddbfault.OpCount{
		"GetItem":    {Requests: 2, Throttled: 1},
		"PutItem":    {Requests: 2, LostReplies: 1},
		"UpdateItem": {Requests: 2, Applied500: 1},
		"DeleteItem": {Requests: 2, Outages: 1},
		"Query":      {Requests: 2, Delayed: 1},
	}
	got := inj.Counts()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counts() =\n%v\nwant\n%v", got, want)
	}
	if n := inj.Requests("PutItem"); n != 2 {
		t.Errorf("Requests(PutItem) = %d, want 2", n)
	}
	inj.ResetCounts()
	if got := inj.Counts(); len(got) != 0 || inj.Requests("PutItem") != 0 {
		t.Errorf("after ResetCounts: %v", got)
	}
	// The rules' Limits are not reset with the counts: all pass now.
	if err := e.get(c, "counts"); err != nil {
		t.Errorf("GetItem after its Limit: %v", err)
	}
	wantCounts(t, inj, "GetItem", ddbfault.OpCount{Requests: 1})
}

// Handler applies the same rules as a reverse proxy in front of DynamoDB
// Local, for clients the test does not build.
func TestHandler(t *testing.T) {
	e := newEnv(t)
	t.Run("Pass", func(t *testing.T) {
		inj := ddbfault.New(1)
		if err := e.put(e.proxyClient(t, inj, 1), "proxy#pass", true); err != nil {
			t.Fatalf("PutItem through the proxy: %v", err)
		}
		e.requireWritten(t, "proxy#pass", true)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 1})
	})
	t.Run("Throttle", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.Throttle, Throttle: ddbfault.ThrottlingException})
		err := e.put(e.proxyClient(t, inj, 1), "proxy#throttle", false)
		var te *types.ThrottlingException
		if !errors.As(err, &te) {
			t.Fatalf("error %v (%T), want *types.ThrottlingException", err, err)
		}
		requireInjectedAPIError(t, err, http.StatusBadRequest)
		e.requireWritten(t, "proxy#throttle", false)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 1, Throttled: 1})
	})
	t.Run("TransactionCanceled", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.Throttle, Throttle: ddbfault.TransactionCanceled})
		err := e.transact(e.proxyClient(t, inj, 1), false, "proxy#tx1", "proxy#tx2")
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) || len(tce.CancellationReasons) != 2 || aws.ToString(tce.CancellationReasons[1].Code) != "ThrottlingError" {
			t.Fatalf("error %v, want TransactionCanceledException with 2 ThrottlingError reasons", err)
		}
		e.requireWritten(t, "proxy#tx1", false)
	})
	t.Run("ApplyThen500", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.ApplyThen500})
		err := e.put(e.proxyClient(t, inj, 1), "proxy#500", false)
		var ise *types.InternalServerError
		if !errors.As(err, &ise) {
			t.Fatalf("error %v (%T), want *types.InternalServerError", err, err)
		}
		requireInjectedAPIError(t, err, http.StatusInternalServerError)
		e.requireWritten(t, "proxy#500", true)
	})
	t.Run("LostReply", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.LostReply})
		err := e.put(e.proxyClient(t, inj, 1), "proxy#lost", false)
		if err == nil {
			t.Fatal("PutItem with a lost reply: no error")
		}
		var api smithy.APIError
		if errors.As(err, &api) {
			t.Fatalf("error %v decoded as API error %s; want a connection error", err, api.ErrorCode())
		}
		if !retry.NewStandard().IsErrorRetryable(err) {
			t.Errorf("standard retryer does not retry %v", err)
		}
		t.Logf("the client saw: %v", err)
		e.requireWritten(t, "proxy#lost", true)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 1, LostReplies: 1})
	})
	t.Run("LostReply conditional retried", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.LostReply, Limit: 1})
		err := e.put(e.proxyClient(t, inj, 0), "proxy#lostcond", true)
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Fatalf("error %v (%T), want *types.ConditionalCheckFailedException", err, err)
		}
		e.requireWritten(t, "proxy#lostcond", true)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 2, LostReplies: 1})
	})
	t.Run("Outage", func(t *testing.T) {
		inj := ddbfault.New(1)
		inj.Set(ddbfault.Rule{Kind: ddbfault.Outage})
		err := e.put(e.proxyClient(t, inj, 1), "proxy#outage", false)
		if err == nil || !retry.NewStandard().IsErrorRetryable(err) {
			t.Fatalf("PutItem during an outage: %v, want a retryable connection error", err)
		}
		e.requireWritten(t, "proxy#outage", false)
		wantCounts(t, inj, "PutItem", ddbfault.OpCount{Requests: 1, Outages: 1})
	})
}

// Set refuses a Fraction outside [0, 1] and a negative Limit.
func TestSetRejectsBadRules(t *testing.T) {
	for _, r := range []ddbfault.Rule{{Fraction: -0.1}, {Fraction: 1.5}, {Limit: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%+v) did not panic", r)
				}
			}()
			ddbfault.New(1).Set(r)
		}()
	}
}
