package dynamostore

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webhook-relay/webhook-relay/internal/dynamotest"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
)

// recorder records the IAM action of every call an Observed API passes on.
type recorder struct {
	mu  sync.Mutex
	got map[string]bool
}

func (r *recorder) observe(op string, input any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx, ok := input.(*dynamodb.TransactWriteItemsInput)
	if !ok {
		r.got["dynamodb:"+op] = true
		return
	}
	// TransactWriteItems is authorised by IAM as the actions of its items.
	for _, it := range tx.TransactItems {
		switch {
		case it.Put != nil:
			r.got["dynamodb:PutItem"] = true
		case it.Update != nil:
			r.got["dynamodb:UpdateItem"] = true
		case it.Delete != nil:
			r.got["dynamodb:DeleteItem"] = true
		case it.ConditionCheck != nil:
			r.got["dynamodb:ConditionCheckItem"] = true
		}
	}
}

// take returns the actions recorded since the last take, sorted.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for a := range r.got {
		out = append(out, a)
	}
	r.got = map[string]bool{}
	slices.Sort(out)
	return out
}

// TestIAMActionsMatchCalls calls every exported method of *Store, on every
// path that can reach a different DynamoDB call, through a recording API,
// and checks that IAMActions declares exactly the actions each one used:
// the SAM template's policies are derived from IAMActions.
func TestIAMActionsMatchCalls(t *testing.T) {
	client := dynamotest.Client(t, dynamotest.Endpoint(t))
	table := dynamotest.TableName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{got: map[string]bool{}}
	api := Observed{API: client, Observe: rec.observe}
	got := map[string][]string{}
	note := func(method string) {
		acts := rec.take()
		got[method] = slices.Compact(slices.Sorted(slices.Values(append(got[method], acts...))))
	}

	// other is a second store on the same table, not recorded: a
	// concurrent writer. It is opened after s, so that s creates the epoch.
	var other *Store
	var raceOnce sync.Once
	var raceErr error
	s, err := New(ctx, api, table, store.Options{BeforeWrite: func(partition string, seq uint64) {
		if partition != store.Partition("race") {
			return
		}
		// Another first attempt with the same key wins while this one holds
		// its number: this one must close its number and answer as the winner.
		raceOnce.Do(func() {
			_, raceErr = other.Append(ctx, message.New(time.Now(), "race", "winner"), "race-key")
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	note(OpenMethod)
	if other, err = New(ctx, client, table, store.Options{}); err != nil {
		t.Fatal(err)
	}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	lease := store.Lease{ID: "c1", SourceIP: "192.0.2.1", SessionID: "a", ExpiresAt: time.Now().Add(time.Minute)}
	scenarios := map[string]func(){
		"Epoch": func() { _, err := s.Epoch(ctx); must(err) },
		"Ping":  func() { must(s.Ping(ctx)) },
		"Append": func() {
			_, err := s.Append(ctx, message.New(time.Now(), "a", "plain"), "")
			must(err)
			_, err = s.Append(ctx, message.New(time.Now(), "a", "keyed"), "k1")
			must(err)
			r, err := s.Append(ctx, message.New(time.Now(), "a", "keyed retry"), "k1")
			must(err)
			if !r.Replayed {
				t.Errorf("retry with the same key: Replayed = false")
			}
			r, err = s.Append(ctx, message.New(time.Now(), "race", "loser"), "race-key")
			must(err)
			must(raceErr)
			if !r.Replayed || r.Message.Text != "winner" {
				t.Errorf("losing first attempt = %+v, want the winner's result", r)
			}
		},
		"Head":       func() { _, err := s.Head(ctx, store.Partition("a")); must(err) },
		"Read":       func() { _, err := s.Read(ctx, store.Partition("a"), 0, 10); must(err) },
		"ReadBefore": func() { _, err := s.ReadBefore(ctx, store.Partition("a"), 10, 10); must(err) },
		"Tombstone": func() {
			_, err := s.Tombstone(ctx, store.Partition("a"), 99) // free slot
			must(err)
			_, err = s.Tombstone(ctx, store.Partition("a"), 1) // written slot
			must(err)
		},
		"IncrementCounter": func() { _, err := s.IncrementCounter(ctx, "k", time.Now().Add(time.Minute)); must(err) },
		"PutLease":         func() { must(s.PutLease(ctx, lease)) },
		"LeaseOf":          func() { _, _, err := s.LeaseOf(ctx, lease.ID); must(err) },
		"AppendClose":      func() { must(s.AppendClose(ctx, store.Partition("a"), lease.ID)) },
		"DeleteLease":      func() { must(s.DeleteLease(ctx, lease)) },
		"CountLeases":      func() { _, err := s.CountLeases(ctx); must(err) },
		"CountLeasesOf":    func() { _, err := s.CountLeasesOf(ctx, store.LeaseScope{SourceIP: "192.0.2.1"}); must(err) },
	}

	typ := reflect.TypeFor[*Store]()
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		run, ok := scenarios[name]
		if !ok {
			t.Errorf("method %s has no scenario in this test: add one (and its actions to iamActions)", name)
			continue
		}
		rec.take()
		run()
		note(name)
		delete(scenarios, name)
	}
	for name := range scenarios {
		t.Errorf("scenario %s names no method of *Store", name)
	}

	for name, acts := range got {
		want, ok := iamActions[name]
		if !ok {
			t.Errorf("%s: no IAM actions declared; it calls %v", name, acts)
			continue
		}
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(acts, want) {
			t.Errorf("%s: calls need %v, iamActions declares %v", name, acts, want)
		}
	}
	for name := range iamActions {
		if _, ok := got[name]; !ok {
			t.Errorf("iamActions declares %s, which is no method of *Store", name)
		}
	}
}

func TestIAMActions(t *testing.T) {
	got, err := IAMActions("Read", "Head", "Read")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}
	if !slices.Equal(got, want) {
		t.Errorf("IAMActions(Read, Head) = %v, want %v (opening included)", got, want)
	}
	if _, err := IAMActions("Scan"); err == nil {
		t.Error("IAMActions(Scan): want an error for an unknown method")
	}
}
