// Package dynamostore is the DynamoDB message store: one table with string
// keys pk and sk and the TTL attribute expiresAt (docs/design.md, "Data
// model").
//
// Items:
//
//	pk=<partition>       sk=#head                 head, takenAt,     sequence counter
//	                                              floor, tok
//	pk=<partition>       sk=<20-digit seq>        kind m|t|c, ...    message, tombstone or close signal
//	pk=idem#<key>        sk=idem                  the first result   idempotency record
//	pk=count#<key>       sk=count                 n                  rate-limit counter
//	pk=conn#<0-7>        sk=<connectionId>        expiresAt, sid,    connection lease, in one of
//	                                              ip                 leaseShards partitions
//	pk=connip#<ip>       sk=<connectionId>        expiresAt          the lease, by source IP
//	pk=connsess#<id>     sk=<connectionId>        expiresAt          the lease, by session
//	pk=meta              sk=epoch                 epoch              store epoch
package dynamostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// TTLAttribute is the table's time-to-live attribute (epoch seconds).
const TTLAttribute = "expiresAt"

// API is the part of the DynamoDB client the store calls.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store is safe for concurrent use.
type Store struct {
	db          API
	table       *string
	ttl         time.Duration
	now         func() time.Time
	beforeWrite store.AppendHook
	epoch       int64
}

const (
	headKey  = "#head"
	seqWidth = 20
	maxSK    = "99999999999999999999"
	leasePK  = "conn#"
	// leaseShards spreads the leases over partitions: a lease is renewed
	// every heartbeat, and one partition takes at most 1,000 writes a
	// second (docs/cost.md, "Limits").
	leaseShards = 8
)

// New opens the store on an existing table, creating its epoch on first use.
func New(ctx context.Context, db API, table string, opts store.Options) (*Store, error) {
	opts = opts.WithDefaults()
	s := &Store{db: db, table: aws.String(table), ttl: opts.TTL, now: opts.Now, beforeWrite: opts.BeforeWrite}
	epoch, err := s.loadEpoch(ctx)
	if err != nil {
		return nil, err
	}
	s.epoch = epoch
	return s, nil
}

func (s *Store) loadEpoch(ctx context.Context) (int64, error) {
	key := keyOf("meta", "epoch")
	for range 2 {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return 0, wrap(err, "read store epoch")
		}
		if out.Item != nil {
			return numAttr(out.Item, "epoch"), nil
		}
		item := keyOf("meta", "epoch")
		item["epoch"] = num(time.Now().UnixMilli())
		_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: s.table, Item: item,
			ConditionExpression: aws.String("attribute_not_exists(pk)"),
		})
		if err != nil && !isConditionFailed(err) {
			return 0, wrap(err, "create store epoch")
		}
	}
	return 0, errors.New("create store epoch: item vanished after creation")
}

// Epoch is fixed for the table.
func (s *Store) Epoch(ctx context.Context) (int64, error) { return s.epoch, nil }

// Ping reads the epoch item: it proves the table answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: keyOf("meta", "epoch")})
	return wrap(err, "ping table")
}

// Append stores msg under the next sequence number of its partition. The
// idempotency key is checked before a number is taken, so a retry leaves no
// hole; the record is written in the same transaction as the message, so
// concurrent first attempts store one message.
//
// DynamoDB can apply a write and lose the reply; the SDK then retries, and
// the retry fails its condition on our own item. Both puts therefore ask for
// the item they collided with, and our own message counts as success. Any
// other failure after the number was taken is settled by closing that
// number ourselves (resolve), so the answer is always the truth: stored,
// not stored, or (store unreachable throughout) ErrUnknownOutcome.
func (s *Store) Append(ctx context.Context, msg message.Message, idemKey string) (store.AppendResult, error) {
	if idemKey != "" {
		if r, ok, err := s.lookupIdem(ctx, idemKey); err != nil || ok {
			return r, err
		}
	}
	partition := store.Partition(msg.SessionID)
	seq, err := s.takeNumber(ctx, partition)
	if err != nil {
		return store.AppendResult{}, err // no number, nothing written
	}
	if s.beforeWrite != nil {
		s.beforeWrite(partition, seq)
	}
	item := s.messageItem(partition, seq, msg, s.now())
	var tries attempts
	if idemKey == "" {
		err = s.put(ctx, partition, seq, msg, item, tries.track)
	} else {
		var r store.AppendResult
		var won bool
		r, won, err = s.putWithKey(ctx, partition, seq, msg, item, idemKey, tries.track)
		if won {
			return r, err
		}
	}
	return s.settleWrite(ctx, partition, seq, msg, &tries, err)
}

// settleWrite turns the error of the write of msg at seq into the truth:
// stored, not stored, or ErrUnknownOutcome.
func (s *Store) settleWrite(ctx context.Context, partition string, seq uint64, msg message.Message, tries *attempts, err error) (store.AppendResult, error) {
	switch {
	case err == nil:
		return store.AppendResult{Message: msg, Seq: seq}, nil
	case errors.Is(err, store.ErrHoleClosed):
		return store.AppendResult{}, err
	case !tries.mayHaveApplied.Load():
		// Every attempt was refused: not stored. Close the number so that
		// readers need not wait for it; if that fails too, they close it.
		s.closeOwn(ctx, partition, seq)
		return store.AppendResult{}, err
	}
	return s.resolve(ctx, partition, seq, msg, err)
}

// AppendClose appends a close signal for stream connectionID to partition,
// numbered like a message: the stream reads the partition anyway, so it
// notices the signal in a read it makes regardless, on whichever instance
// it runs. Its outcome is settled like an append's.
func (s *Store) AppendClose(ctx context.Context, partition, connectionID string) error {
	seq, err := s.takeNumber(ctx, partition)
	if err != nil {
		return err
	}
	now := s.now()
	// The signal's own id lets a lost reply be told from a reader's
	// tombstone, as for a message.
	sig := message.Message{ID: "close-" + randomToken(), Timestamp: now.UnixMilli()}
	item := keyOf(partition, seqKey(seq))
	item["kind"] = str("c")
	item["seq"] = num(int64(seq))
	item["messageId"] = str(sig.ID)
	item["target"] = str(connectionID)
	item["timestamp"] = num(sig.Timestamp)
	item[TTLAttribute] = num(expirySeconds(now.Add(s.ttl)))
	var tries attempts
	err = s.put(ctx, partition, seq, sig, item, tries.track)
	_, err = s.settleWrite(ctx, partition, seq, sig, &tries, err)
	return err
}

// closeOwn tombstones a number whose write is known not to have been
// applied, briefly and at best.
func (s *Store) closeOwn(ctx context.Context, partition string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout/5)
	defer cancel()
	_, _ = s.Tombstone(ctx, partition, seq)
}

// put writes the message item unless its slot is taken.
func (s *Store) put(ctx context.Context, partition string, seq uint64, msg message.Message, item map[string]types.AttributeValue, opts ...func(*dynamodb.Options)) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: item,
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}, opts...)
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) {
		return s.collided(failed.Item, msg)
	}
	return wrap(err, "put message %s/%d", partition, seq)
}

// collided tells what a conditional put of msg found in its slot: msg
// itself (an earlier attempt of ours was applied), or a reader's tombstone.
func (s *Store) collided(old map[string]types.AttributeValue, msg message.Message) error {
	if old != nil && strAttr(old, "kind") != "t" && strAttr(old, "messageId") == msg.ID {
		return nil
	}
	return store.ErrHoleClosed
}

// putWithKey writes the message and its idempotency record in one
// transaction. won is set when a concurrent first attempt with the same key
// stored its message first: r is then that attempt's result.
func (s *Store) putWithKey(ctx context.Context, partition string, seq uint64, msg message.Message, item map[string]types.AttributeValue, idemKey string, opts ...func(*dynamodb.Options)) (r store.AppendResult, won bool, err error) {
	now := s.now()
	rec := keyOf("idem#"+idemKey, "idem")
	for k, v := range item {
		if k != "pk" && k != "sk" && k != "kind" {
			rec[k] = v
		}
	}
	rec["partition"] = str(partition)
	rec[TTLAttribute] = num(expirySeconds(now.Add(max(s.ttl, store.IdempotencyRetention))))
	in := &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{
			TableName: s.table, Item: item,
			ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}},
		{Put: &types.Put{
			TableName: s.table, Item: rec,
			// An expired record that DynamoDB has not deleted yet is free.
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR expiresAt <= :now"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now.Unix())},
		}},
	}}
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		_, err := s.db.TransactWriteItems(ctx, in, opts...)
		if err == nil {
			return store.AppendResult{}, false, nil
		}
		var canceled *types.TransactionCanceledException
		if !errors.As(err, &canceled) {
			return store.AppendResult{}, false, wrap(err, "write message %s/%d with idempotency key", partition, seq)
		}
		reasons := canceled.CancellationReasons
		if len(reasons) == 2 && aws.ToString(reasons[0].Code) == "ConditionalCheckFailed" {
			return store.AppendResult{}, false, s.collided(reasons[0].Item, msg)
		}
		if len(reasons) == 2 && aws.ToString(reasons[1].Code) == "ConditionalCheckFailed" {
			// A concurrent first attempt with the same key won: answer as it
			// did, and close our number at once so readers need not wait.
			r, ok, lerr := s.lookupIdem(ctx, idemKey)
			if lerr != nil {
				return store.AppendResult{}, false, lerr
			}
			if ok {
				if _, terr := s.Tombstone(ctx, partition, seq); terr != nil {
					return store.AppendResult{}, false, terr
				}
				return r, true, nil
			}
		}
		conflict := slices.ContainsFunc(reasons, func(r types.CancellationReason) bool {
			return aws.ToString(r.Code) == "TransactionConflict"
		})
		if !conflict || attempt >= 5 {
			// Throttling among the reasons, or a conflict that persisted:
			// nothing of this transaction was applied.
			return store.AppendResult{}, false, wrap(err, "write message %s/%d with idempotency key", partition, seq)
		}
		select {
		case <-ctx.Done():
			return store.AppendResult{}, false, store.Unavailable(ctx.Err())
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// resolveTimeout bounds how long an append tries to learn its own outcome
// after its write failed; it runs past the request's own deadline (ingest's
// MaxWriteTime), within StaleAge.
const resolveTimeout = store.MaxWriteTime / 2

// resolve settles the outcome of a write that failed with cause, which may
// have been applied all the same (a 500, a lost reply, a timeout; or a
// throttled retry of an attempt that was applied): it closes its own number
// with a conditional tombstone, which either finds the message (stored) or
// makes sure it never will be (not stored).
func (s *Store) resolve(ctx context.Context, partition string, seq uint64, msg message.Message, cause error) (store.AppendResult, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	for backoff := 25 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		e, err := s.Tombstone(ctx, partition, seq)
		if err == nil {
			if !e.Tombstone && e.Message.ID == msg.ID {
				return store.AppendResult{Message: msg, Seq: seq}, nil
			}
			return store.AppendResult{}, store.Unavailable(cause)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return store.AppendResult{}, fmt.Errorf("%w (%s/%d): %w", store.ErrUnknownOutcome, partition, seq, cause)
		case <-t.C:
		}
	}
}

// takeNumber takes the partition's next sequence number. Each call carries
// a token: an SDK retry of an update that was applied but whose reply was
// lost fails its condition on that token and reads the number it took,
// instead of taking a second one (a hole every reader would wait for).
//
// It also keeps the partition's floor: the first number taken after the
// partition was quiet for StaleAge records the head before it, since no
// writer of those numbers can still be in flight. A fresh stream settles
// down to the floor at most.
func (s *Store) takeNumber(ctx context.Context, partition string) (uint64, error) {
	now := s.now()
	tok := randomToken()
	vals := func(extra ...string) map[string]types.AttributeValue {
		v := map[string]types.AttributeValue{
			":one": num(1), ":now": num(now.UnixMilli()), ":tok": str(tok),
			":limit": num(now.Add(-store.StaleAge).UnixMilli()),
		}
		if len(extra) > 0 {
			v[":zero"] = num(0)
		}
		return v
	}
	notOurs := "(attribute_not_exists(tok) OR tok <> :tok)"
	busy := &dynamodb.UpdateItemInput{
		TableName:                           s.table,
		Key:                                 keyOf(partition, headKey),
		UpdateExpression:                    aws.String("ADD head :one SET takenAt = :now, tok = :tok"),
		ConditionExpression:                 aws.String("takenAt >= :limit AND " + notOurs),
		ExpressionAttributeValues:           vals(),
		ReturnValues:                        types.ReturnValueUpdatedNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	quiet := &dynamodb.UpdateItemInput{
		TableName:                           s.table,
		Key:                                 keyOf(partition, headKey),
		UpdateExpression:                    aws.String("ADD head :one SET floor = if_not_exists(head, :zero), takenAt = :now, tok = :tok"),
		ConditionExpression:                 aws.String("(attribute_not_exists(takenAt) OR takenAt < :limit) AND " + notOurs),
		ExpressionAttributeValues:           vals(":zero"),
		ReturnValues:                        types.ReturnValueUpdatedNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	in := busy
	for range 4 {
		out, err := s.db.UpdateItem(ctx, in)
		if err == nil {
			return uint64(numAttr(out.Attributes, "head")), nil
		}
		var failed *types.ConditionalCheckFailedException
		if !errors.As(err, &failed) {
			return 0, wrap(err, "take sequence number in %s", partition)
		}
		if strAttr(failed.Item, "tok") == tok {
			return uint64(numAttr(failed.Item, "head")), nil // our own, applied before
		}
		// The partition turned quiet or busy since we looked: the other form.
		if in == busy {
			in = quiet
		} else {
			in = busy
		}
	}
	return 0, store.Unavailable(fmt.Errorf("take sequence number in %s: the partition kept changing between quiet and busy", partition))
}

func randomToken() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) lookupIdem(ctx context.Context, key string) (store.AppendResult, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: keyOf("idem#"+key, "idem"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return store.AppendResult{}, false, wrap(err, "read idempotency key")
	}
	if out.Item == nil || numAttr(out.Item, TTLAttribute) <= s.now().Unix() {
		return store.AppendResult{}, false, nil
	}
	e := s.entryOf(out.Item)
	return store.AppendResult{Message: e.Message, Seq: e.Seq, Replayed: true}, true, nil
}

func (s *Store) messageItem(partition string, seq uint64, msg message.Message, now time.Time) map[string]types.AttributeValue {
	item := keyOf(partition, seqKey(seq))
	item["kind"] = str("m")
	item["seq"] = num(int64(seq))
	item["messageId"] = str(msg.ID)
	item["message"] = str(msg.Text)
	item["timestamp"] = num(msg.Timestamp)
	if msg.SessionID != "" {
		item["sessionId"] = str(msg.SessionID)
	}
	item[TTLAttribute] = num(expirySeconds(now.Add(s.ttl)))
	return item
}

// expirySeconds is the TTL attribute for t: whole seconds rounded up, so
// that an item is never expired early (a short retention would otherwise
// lose up to a second of it).
func expirySeconds(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

// Head returns partition's sequence counter.
func (s *Store) Head(ctx context.Context, partition string) (store.Head, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: keyOf(partition, headKey), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return store.Head{}, wrap(err, "read head of %s", partition)
	}
	if out.Item == nil {
		return store.Head{}, nil
	}
	return store.Head{
		Seq:     uint64(numAttr(out.Item, "head")),
		TakenAt: time.UnixMilli(numAttr(out.Item, "takenAt")),
		Floor:   uint64(numAttr(out.Item, "floor")),
	}, nil
}

// Read returns up to limit entries of partition numbered above after, in
// order, with strongly consistent Queries: as many 1 MB pages as it takes.
// Expired entries are flagged, never delivered: DynamoDB deletes them late.
func (s *Store) Read(ctx context.Context, partition string, after uint64, limit int) ([]store.Entry, error) {
	entries, err := s.query(ctx, partition, seqKey(after+1), maxSK, true, limit)
	return entries, wrap(err, "query %s after %d", partition, after)
}

// ReadBefore returns up to limit entries numbered below before, highest
// first.
func (s *Store) ReadBefore(ctx context.Context, partition string, before uint64, limit int) ([]store.Entry, error) {
	if before <= 1 {
		return nil, nil
	}
	entries, err := s.query(ctx, partition, seqKey(1), seqKey(before-1), false, limit)
	return entries, wrap(err, "query %s before %d", partition, before)
}

func (s *Store) query(ctx context.Context, partition, from, to string, forward bool, limit int) ([]store.Entry, error) {
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(partition), ":from": str(from), ":to": str(to),
		},
		ConsistentRead:   aws.Bool(true),
		ScanIndexForward: aws.Bool(forward),
	}
	var entries []store.Entry
	for len(entries) < limit {
		in.Limit = aws.Int32(int32(min(limit-len(entries), 1000)))
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return entries, err
		}
		if entries == nil {
			entries = make([]store.Entry, 0, len(out.Items))
		}
		for _, it := range out.Items {
			entries = append(entries, s.entryOf(it))
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	return entries, nil
}

// Tombstone closes slot seq unless it was written, and returns what the slot
// holds.
func (s *Store) Tombstone(ctx context.Context, partition string, seq uint64) (store.Entry, error) {
	now := s.now()
	item := keyOf(partition, seqKey(seq))
	item["kind"] = str("t")
	item["seq"] = num(int64(seq))
	item["timestamp"] = num(now.UnixMilli())
	item[TTLAttribute] = num(expirySeconds(now.Add(s.ttl)))
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: item,
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var failed *types.ConditionalCheckFailedException
	if errors.As(err, &failed) && failed.Item != nil {
		return s.entryOf(failed.Item), nil
	}
	if err != nil {
		return store.Entry{}, wrap(err, "close hole %s/%d", partition, seq)
	}
	return s.entryOf(item), nil
}

func (s *Store) entryOf(it map[string]types.AttributeValue) store.Entry {
	e := store.Entry{
		Seq:         uint64(numAttr(it, "seq")),
		Tombstone:   strAttr(it, "kind") == "t",
		Expired:     numAttr(it, TTLAttribute) <= s.now().Unix(),
		CloseStream: strAttr(it, "target"),
		Message: message.Message{
			ID:        strAttr(it, "messageId"),
			SessionID: strAttr(it, "sessionId"),
			Text:      strAttr(it, "message"),
			Timestamp: numAttr(it, "timestamp"),
		},
	}
	return e
}

// IncrementCounter adds one to counter key and returns the new count. The
// caller puts the window in the key; expiresAt lets DynamoDB remove it.
func (s *Store) IncrementCounter(ctx context.Context, key string, expiresAt time.Time) (int64, error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        s.table,
		Key:              keyOf("count#"+key, "count"),
		UpdateExpression: aws.String("ADD n :one SET expiresAt = if_not_exists(expiresAt, :exp)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":one": num(1), ":exp": num(expiresAt.Unix()),
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	if err != nil {
		return 0, wrap(err, "increment counter")
	}
	return numAttr(out.Attributes, "n"), nil
}

// leaseShard is the partition of the lease item of connection id.
func leaseShard(id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return leasePK + strconv.Itoa(int(h.Sum32()%leaseShards))
}

// leaseKeys are the items of one lease: the lease itself, in its shard, and
// one per scope it counts towards, so that each scope is counted by a Query
// of its own small partition.
func leaseKeys(l store.Lease) []map[string]types.AttributeValue {
	keys := []map[string]types.AttributeValue{keyOf(leaseShard(l.ID), l.ID)}
	if l.SourceIP != "" {
		keys = append(keys, keyOf(leaseScopePK(store.LeaseScope{SourceIP: l.SourceIP}), l.ID))
	}
	if l.SessionID != "" {
		keys = append(keys, keyOf(leaseScopePK(store.LeaseScope{SessionID: l.SessionID}), l.ID))
	}
	return keys
}

func leaseScopePK(scope store.LeaseScope) string {
	if scope.SourceIP != "" {
		return "connip#" + scope.SourceIP
	}
	return "connsess#" + scope.SessionID
}

// PutLease creates or renews a connection lease (one small item per scope).
// The lease item names the session and source, so that a close request,
// which knows only the connection id, can find the stream's partition.
func (s *Store) PutLease(ctx context.Context, l store.Lease) error {
	for i, item := range leaseKeys(l) {
		item[TTLAttribute] = num(expirySeconds(l.ExpiresAt))
		if i == 0 && l.SessionID != "" {
			item["sid"] = str(l.SessionID)
		}
		if i == 0 && l.SourceIP != "" {
			item["ip"] = str(l.SourceIP)
		}
		if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: item}); err != nil {
			return wrap(err, "put lease %s", l.ID)
		}
	}
	return nil
}

// DeleteLease releases a lease.
func (s *Store) DeleteLease(ctx context.Context, l store.Lease) error {
	var errs []error
	for _, key := range leaseKeys(l) {
		_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: s.table, Key: key})
		errs = append(errs, wrap(err, "delete lease %s", l.ID))
	}
	return errors.Join(errs...)
}

// LeaseOf returns the unexpired lease with connection id id.
func (s *Store) LeaseOf(ctx context.Context, id string) (store.Lease, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: keyOf(leaseShard(id), id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return store.Lease{}, false, wrap(err, "read lease %s", id)
	}
	exp := numAttr(out.Item, TTLAttribute)
	if out.Item == nil || exp <= s.now().Unix() {
		return store.Lease{}, false, nil
	}
	return store.Lease{ID: id, SessionID: strAttr(out.Item, "sid"), SourceIP: strAttr(out.Item, "ip"), ExpiresAt: time.Unix(exp, 0)}, true, nil
}

// CountLeases counts unexpired leases across every instance: one Select
// COUNT Query per shard, in parallel, eventually consistent (half the read
// units; a health figure may lag a second).
func (s *Store) CountLeases(ctx context.Context) (int, error) {
	counts := make([]int, leaseShards)
	errs := make([]error, leaseShards)
	var wg sync.WaitGroup
	for i := range leaseShards {
		wg.Go(func() {
			counts[i], errs[i] = s.countPartition(ctx, leasePK+strconv.Itoa(i), false)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, nil
}

// CountLeasesOf counts the unexpired leases of one source IP or session,
// strongly consistent: a stream cap counts itself in right after its put.
// All of them for the zero scope (CountLeases).
func (s *Store) CountLeasesOf(ctx context.Context, scope store.LeaseScope) (int, error) {
	if scope == (store.LeaseScope{}) {
		return s.CountLeases(ctx)
	}
	return s.countPartition(ctx, leaseScopePK(scope), true)
}

// countPartition counts the unexpired lease items of pk with Select COUNT:
// the items are tiny, so a page of a thousand costs a few read units.
func (s *Store) countPartition(ctx context.Context, pk string, consistent bool) (int, error) {
	in := &dynamodb.QueryInput{
		TableName:                s.table,
		KeyConditionExpression:   aws.String("pk = :pk"),
		FilterExpression:         aws.String("#exp > :now"),
		ExpressionAttributeNames: map[string]string{"#exp": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(pk), ":now": num(s.now().Unix()),
		},
		Select:         types.SelectCount,
		ConsistentRead: aws.Bool(consistent),
	}
	n := 0
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return 0, wrap(err, "count leases in %s", pk)
		}
		n += int(out.Count)
		if len(out.LastEvaluatedKey) == 0 {
			return n, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

func seqKey(seq uint64) string {
	s := strconv.FormatUint(seq, 10)
	if len(s) >= seqWidth {
		return s
	}
	return "00000000000000000000"[:seqWidth-len(s)] + s
}

func keyOf(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk), "sk": str(sk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func strAttr(it map[string]types.AttributeValue, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func numAttr(it map[string]types.AttributeValue, name string) int64 {
	if v, ok := it[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func isConditionFailed(err error) bool {
	var failed *types.ConditionalCheckFailedException
	return errors.As(err, &failed)
}

// wrap adds what was being done to err, and marks faults of the service as
// unavailability (the caller answers 503 and the sender retries). Errors
// that retrying cannot fix, such as a missing table, stay plain.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf(format+": %w", append(args, err)...)
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ResourceNotFoundException", "ValidationException", "AccessDeniedException", "UnrecognizedClientException":
			return err
		case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded":
			return store.Throttled(err)
		}
	}
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) && slices.ContainsFunc(canceled.CancellationReasons, func(r types.CancellationReason) bool {
		return aws.ToString(r.Code) == "ThrottlingError" || aws.ToString(r.Code) == "ProvisionedThroughputExceeded"
	}) {
		return store.Throttled(err)
	}
	return store.Unavailable(err)
}
