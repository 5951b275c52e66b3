package dynamostore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
)

const (
	messagePut   = `"kind":{"S":"m"}`
	tombstonePut = `"kind":{"S":"t"}`
)

// Each way AWS answers a write, and what Append must make of it: the truth.
// stored says whether the message must be in the store afterwards; hole
// whether its number may stay open (it never may: a failed append closes it).
func TestAppendTellsTheTruthUnderFaults(t *testing.T) {
	type want int
	const (
		ok          want = iota // stored, once
		notStored               // ErrUnavailable (503): nothing stored, number closed
		maybeStored             // ErrUnknownOutcome (504)
	)
	throttle := func(shape string) ddbfault.Rule {
		return ddbfault.Rule{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.Throttle, Throttle: shape}
	}
	tests := []struct {
		name  string
		key   string
		rules []ddbfault.Rule
		want  want
	}{
		{"lost reply on the put (SDK retry meets our own item)", "",
			[]ddbfault.Rule{{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.LostReply, Limit: 1}}, ok},
		{"500 after the put was applied", "",
			[]ddbfault.Rule{{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.ApplyThen500, Limit: 1}}, ok},
		{"lost reply on the transaction", "k",
			[]ddbfault.Rule{{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.LostReply, Limit: 1}}, ok},
		{"500 after the transaction was applied", "k",
			[]ddbfault.Rule{{Ops: []string{"TransactWriteItems"}, Kind: ddbfault.ApplyThen500, Limit: 1}}, ok},
		{"every reply of the put lost, then a throttled retry", "",
			[]ddbfault.Rule{
				{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.LostReply, Limit: 1},
				{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.Throttle},
			}, ok},
		{"lost reply on taking the number", "",
			[]ddbfault.Rule{{Ops: []string{"UpdateItem"}, Kind: ddbfault.LostReply, Limit: 1}}, ok},
		{"put throttled through every SDK retry", "",
			[]ddbfault.Rule{{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.Throttle}}, notStored},
		{"transaction throttled: ProvisionedThroughputExceeded", "k", []ddbfault.Rule{throttle(ddbfault.ProvisionedThroughputExceeded)}, notStored},
		{"transaction throttled: ThrottlingException", "k", []ddbfault.Rule{throttle(ddbfault.ThrottlingException)}, notStored},
		{"transaction throttled: RequestLimitExceeded", "k", []ddbfault.Rule{throttle(ddbfault.RequestLimitExceeded)}, notStored},
		{"transaction cancelled for throttling", "k", []ddbfault.Rule{throttle(ddbfault.TransactionCanceled)}, notStored},
		{"number taking throttled", "",
			[]ddbfault.Rule{{Ops: []string{"UpdateItem"}, Kind: ddbfault.Throttle}}, notStored},
		{"write held past the request's deadline", "",
			[]ddbfault.Rule{{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.Pass, Delay: time.Minute}}, notStored},
		{"applied, reply lost, and the store gone before the outcome is known", "",
			[]ddbfault.Rule{
				{Ops: []string{"PutItem"}, Contains: messagePut, Kind: ddbfault.LostReply},
				{Contains: tombstonePut, Kind: ddbfault.Outage},
			}, maybeStored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inj := ddbfault.New(7)
			s := storetest.NewFaultyDynamo(t, store.Options{}, inj)
			inj.Set(tt.rules...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			m := message.New(time.Now(), "f", tt.name)
			res, err := s.Append(ctx, m, tt.key)
			inj.Clear()
			t.Logf("err %v; faults %+v", err, inj.Counts())

			switch tt.want {
			case ok:
				if err != nil || res.Message.ID != m.ID {
					t.Fatalf("Append = %+v, %v; want success: the message was stored", res, err)
				}
			case notStored:
				if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUnknownOutcome) {
					t.Fatalf("Append error = %v; want ErrUnavailable (503: nothing stored)", err)
				}
				// Throttling is told apart, for the operator's metric.
				if throttled := strings.Contains(tt.name, "throttl"); errors.Is(err, store.ErrThrottled) != throttled {
					t.Fatalf("Append error = %v; ErrThrottled %v, want %v", err, !throttled, throttled)
				}
			case maybeStored:
				if !errors.Is(err, store.ErrUnknownOutcome) {
					t.Fatalf("Append error = %v; want ErrUnknownOutcome", err)
				}
				return
			}
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer rcancel()
			head, err := s.Head(rctx, store.Partition("f"))
			if err != nil {
				t.Fatal(err)
			}
			entries, err := s.Read(rctx, store.Partition("f"), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			stored := 0
			for _, e := range entries {
				if !e.Tombstone && e.Message.ID == m.ID {
					stored++
				}
			}
			if want := map[want]int{ok: 1, notStored: 0}[tt.want]; stored != want {
				t.Fatalf("message stored %d times, want %d (entries %+v)", stored, want, entries)
			}
			// No number is left open for readers to wait on.
			if uint64(len(entries)) != head.Seq {
				t.Fatalf("head %d but %d slots settled (%+v): a failed append left a hole", head.Seq, len(entries), entries)
			}
		})
	}
}
