package tail_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/tail"
)

// pollingStore is a memory store seen as DynamoDB is: it cannot notify, so
// followers poll; it counts the Reads they make.
type pollingStore struct {
	ms    *memstore.Store
	reads atomic.Int64
}

func (s *pollingStore) Epoch(ctx context.Context) (int64, error) { return s.ms.Epoch(ctx) }
func (s *pollingStore) Head(ctx context.Context, p string) (store.Head, error) {
	return s.ms.Head(ctx, p)
}
func (s *pollingStore) Read(ctx context.Context, p string, after uint64, limit int) ([]store.Entry, error) {
	s.reads.Add(1)
	return s.ms.Read(ctx, p, after, limit)
}
func (s *pollingStore) ReadBefore(ctx context.Context, p string, before uint64, limit int) ([]store.Entry, error) {
	return s.ms.ReadBefore(ctx, p, before, limit)
}
func (s *pollingStore) Tombstone(ctx context.Context, p string, seq uint64) (store.Entry, error) {
	return s.ms.Tombstone(ctx, p, seq)
}

// follow runs f like a stream does until it has want messages, and returns
// their ids in order.
func follow(ctx context.Context, f *tail.Follower, want int) ([]string, error) {
	var ids []string
	for len(ids) < want {
		ds, err := f.Poll(ctx)
		if err != nil {
			return ids, err
		}
		for _, d := range ds {
			ids = append(ids, d.Message.ID)
		}
		w := f.Next()
		t := time.NewTimer(w.After)
		select {
		case <-ctx.Done():
			t.Stop()
			return ids, fmt.Errorf("%d of %d messages: %w", len(ids), want, ctx.Err())
		case <-w.C[0]:
		case <-w.C[1]:
		case <-t.C:
		}
		t.Stop()
	}
	return ids, nil
}

// TestHubReadsOncePerPoll: k followers of broadcast sharing a hub make the
// reads one follower makes, not k times as many, and each gets every
// message once, in order. Without the hub the reads grow with k (the
// control).
func TestHubReadsOncePerPoll(t *testing.T) {
	const messages, poll = 40, 20 * time.Millisecond
	for _, tt := range []struct {
		k   int
		hub bool
	}{{1, true}, {10, true}, {100, true}, {10, false}} {
		name := fmt.Sprintf("k=%d,hub=%v", tt.k, tt.hub)
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			st := &pollingStore{ms: memstore.New(store.Options{})}
			opts := tail.Options{PollInterval: poll, HoleTimeout: time.Second}
			if tt.hub {
				opts.Hub = tail.NewHub()
			}
			var fs []*tail.Follower
			for range tt.k {
				f, _, _, err := tail.Open(ctx, st, opts, "", "")
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				fs = append(fs, f)
			}
			st.reads.Store(0)
			start := time.Now()
			var sent []string
			var wg sync.WaitGroup
			got := make([][]string, tt.k)
			errs := make([]error, tt.k)
			for i, f := range fs {
				wg.Go(func() { got[i], errs[i] = follow(ctx, f, messages) })
			}
			for i := range messages {
				m := message.New(time.Now(), "", fmt.Sprint("m", i))
				if _, err := st.ms.Append(ctx, m, ""); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, m.ID)
				time.Sleep(poll / 2)
			}
			wg.Wait()
			for i := range fs {
				if errs[i] != nil || fmt.Sprint(got[i]) != fmt.Sprint(sent) {
					t.Fatalf("follower %d got %d messages (%v), want all %d in order", i, len(got[i]), errs[i], len(sent))
				}
			}
			reads, polls := st.reads.Load(), int64(time.Since(start)/poll)
			t.Logf("%s: %d Reads in %d poll intervals, for %d messages", name, reads, polls, messages)
			// A hub reads at most once per interval, whatever k; followers
			// without one read once per interval each (the control), even
			// if a loaded machine delays some of their timers.
			if tt.hub && reads > polls+2 {
				t.Errorf("%d followers on a hub made %d Reads in %d poll intervals: more than one per interval", tt.k, reads, polls)
			}
			if !tt.hub && reads < int64(tt.k)*polls/3 {
				t.Errorf("control: %d followers without a hub made only %d Reads in %d intervals; the count does not tell", tt.k, reads, polls)
			}
		})
	}
}

// TestHubFollowerBehindWindow: a follower resuming from further back than
// the feed keeps catches up by itself, exactly, and then rides the feed;
// the feed is dropped when the last follower leaves.
func TestHubFollowerBehindWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st := &pollingStore{ms: memstore.New(store.Options{})}
	hub := tail.NewHub()
	opts := tail.Options{PollInterval: 5 * time.Millisecond, HoleTimeout: time.Second, Hub: hub}
	first, _, _, err := tail.Open(ctx, st, opts, "", "")
	if err != nil {
		t.Fatal(err)
	}
	start := first.Start().String()
	var sent []string
	appendN := func(n int) {
		for i := range n {
			m := message.New(time.Now(), "", fmt.Sprint("m", len(sent)+i))
			if _, err := st.ms.Append(ctx, m, ""); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, m.ID)
		}
	}
	// More than the feed's window, read by the first follower in batches.
	appendN(3000)
	if got, err := follow(ctx, first, 3000); err != nil || fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("first follower: %d messages, %v", len(got), err)
	}
	late, _, reset, err := tail.Open(ctx, st, opts, "", start)
	if err != nil || reset != "" {
		t.Fatalf("resume from the start: %v %q", err, reset)
	}
	appendN(10)
	got, err := follow(ctx, late, len(sent))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("late follower got %d of %d messages (%v), or out of order", len(got), len(sent), err)
	}
	if n := hub.Feeds(); n != 1 {
		t.Fatalf("hub reads %d partitions, want 1 (broadcast)", n)
	}
	first.Close()
	late.Close()
	late.Close() // twice is fine
	if n := hub.Feeds(); n != 0 {
		t.Fatalf("hub still reads %d partitions after every follower left", n)
	}
}
