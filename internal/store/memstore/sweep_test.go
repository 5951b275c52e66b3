package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

// After the retention has passed the store holds nothing of what it was
// sent: expired messages of quiet partitions, idempotency records never
// asked for again, partitions that only stream opens made, counters,
// leases, and the slot of a writer that died between number and write.
func TestSweepForgetsWhatExpired(t *testing.T) {
	clock := storetest.NewClock()
	ttl := time.Hour
	p := &dying{partition: store.Partition("dead"), seq: 1}
	s := memstore.New(store.Options{TTL: ttl, Now: clock.Now, BeforeWrite: p.hook})
	ctx := context.Background()

	// A writer that dies holding number 1 of "dead", then a message above it.
	wctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	if _, err := s.Append(wctx, message.New(clock.Now(), "dead", "never written"), ""); err == nil {
		t.Fatal("the dying writer succeeded")
	}
	if _, err := s.Append(ctx, message.New(clock.Now(), "dead", "above the hole"), ""); err != nil {
		t.Fatal(err)
	}
	const sessions, opens = 2000, 3000
	for i := range sessions {
		if _, err := s.Append(ctx, message.New(clock.Now(), fmt.Sprint("s", i), "hi"), fmt.Sprint("key-", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range opens { // a stream opens, waits for its first message, goes
		f, _, _, err := tail.Open(ctx, s, tail.Options{Now: clock.Now}, fmt.Sprint("visitor-", i), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.IncrementCounter(ctx, "ip#1", clock.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLease(ctx, store.Lease{ID: "c1", ExpiresAt: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if before.Partitions < sessions+opens || before.IdempotencyKeys != sessions {
		t.Fatalf("before expiry: %+v", before)
	}

	clock.Advance(ttl + time.Minute)
	s.Sweep()
	if after := s.Stats(); after.Partitions+after.Slots+after.Counters+after.Leases != 0 || after.IdempotencyKeys != sessions {
		t.Fatalf("after the retention: %+v, want only the idempotency records (kept %v)", after, store.IdempotencyRetention)
	}
	clock.Advance(store.IdempotencyRetention)
	s.Sweep()
	if after := s.Stats(); after != (memstore.Stats{}) {
		t.Fatalf("after the retention: %+v (before %+v), want an empty store", after, before)
	}
	// Numbering goes on above everything a reader may hold a cursor past.
	res, err := s.Append(ctx, message.New(clock.Now(), "s1", "again"), "")
	if err != nil || res.Seq <= 1 {
		t.Fatalf("append after the sweep = %+v, %v; want a number above the dropped partition's", res, err)
	}
}

// The sweep runs by itself: appends and stream opens trigger it.
func TestSweepRunsByItself(t *testing.T) {
	clock := storetest.NewClock()
	s := memstore.New(store.Options{TTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	for i := range 100 {
		if _, err := s.Append(ctx, message.New(clock.Now(), fmt.Sprint("s", i), "hi"), ""); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Hour)
	if _, err := s.Append(ctx, message.New(clock.Now(), "fresh", "hi"), ""); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Partitions != 1 || st.Slots != 1 {
		t.Fatalf("after an append past the retention: %+v, want only the fresh partition", st)
	}
}

// A follower that was open while its partition was dropped and made again
// still gets the next message at once, not after a hole timeout.
func TestFollowerAcrossSweep(t *testing.T) {
	clock := storetest.NewClock()
	s := memstore.New(store.Options{TTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	if _, err := s.Append(ctx, message.New(clock.Now(), "x", "old"), ""); err != nil {
		t.Fatal(err)
	}
	f, _, _, err := tail.Open(ctx, s, tail.Options{Now: clock.Now, HoleTimeout: time.Hour}, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	s.Sweep()
	for i := range 3 { // others move the numbering on
		if _, err := s.Append(ctx, message.New(clock.Now(), fmt.Sprint("o", i), "o"), ""); err != nil {
			t.Fatal(err)
		}
	}
	m := message.New(clock.Now(), "x", "new")
	if _, err := s.Append(ctx, m, ""); err != nil {
		t.Fatal(err)
	}
	ds, err := f.Poll(ctx)
	if err != nil || len(ds) != 1 || ds[0].Message.ID != m.ID {
		t.Fatalf("poll after the partition was dropped and made again = %+v, %v; want the new message at once", ds, err)
	}
}

type dying struct {
	partition string
	seq       uint64
	cancel    context.CancelFunc
}

func (d *dying) hook(partition string, seq uint64) {
	if partition == d.partition && seq == d.seq {
		d.cancel()
	}
}
