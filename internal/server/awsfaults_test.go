package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ddbfault"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

const messagePut = `"kind":{"S":"m"}`

// What a sender is told when AWS throttles or loses a reply: 200 only when
// the message is stored, 503 with Retry-After only when it is not, 504 when
// nobody can know; never a 500. The message is delivered exactly when the
// answer says so.
func TestAnswersUnderAWSFaults(t *testing.T) {
	throttle := func(ops []string, shape string) []ddbfault.Rule {
		return []ddbfault.Rule{{Ops: ops, Kind: ddbfault.Throttle, Throttle: shape}}
	}
	tx, put := []string{"TransactWriteItems"}, []string{"PutItem"}
	tests := []struct {
		name   string
		key    string
		rules  []ddbfault.Rule
		status int
	}{
		{"lost reply on the write", "", []ddbfault.Rule{{Ops: put, Contains: messagePut, Kind: ddbfault.LostReply, Limit: 1}}, 200},
		{"500 after applying", "k1", []ddbfault.Rule{{Ops: tx, Kind: ddbfault.ApplyThen500, Limit: 1}}, 200},
		{"ProvisionedThroughputExceeded", "", throttle(put, ddbfault.ProvisionedThroughputExceeded), 503},
		{"ThrottlingException", "", throttle(put, ddbfault.ThrottlingException), 503},
		{"RequestLimitExceeded", "", throttle(nil, ddbfault.RequestLimitExceeded), 503},
		{"TransactionCanceled with ThrottlingError", "k2", throttle(tx, ddbfault.TransactionCanceled), 503},
		{"throttled transaction", "k3", throttle(tx, ddbfault.ProvisionedThroughputExceeded), 503},
		{"applied, then the store unreachable", "", []ddbfault.Rule{
			{Ops: put, Contains: messagePut, Kind: ddbfault.LostReply},
			{Ops: put, Kind: ddbfault.Outage},
		}, 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inj := ddbfault.New(3)
			st := storetest.NewFaultyDynamo(t, store.Options{}, inj)
			srv := start(t, st, testConfig(func(c *config.Config) { c.ReplayCount = 10 }), stream.Options{})
			inj.Set(tt.rules...)
			req, _ := http.NewRequest("POST", srv.URL+"/api/webhook", strings.NewReader(`{"message":"fault: `+tt.name+`","sessionId":"s"}`))
			req.Header.Set("Content-Type", "application/json")
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Success   bool   `json:"success"`
				MessageID string `json:"messageId"`
				Error     string `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			inj.Clear()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d; faults %+v", resp.StatusCode, body.Error, tt.status, inj.Counts())
			}
			if tt.status != 200 && (resp.Header.Get("Retry-After") == "" || body.Success || body.Error == "") {
				t.Fatalf("%d without Retry-After or a JSON sentence: %+v", tt.status, body)
			}
			if tt.status == 503 && !strings.Contains(body.Error, "nothing was stored") {
				t.Fatalf("503 says %q", body.Error)
			}
			if tt.status == 504 && !strings.Contains(body.Error, "may have been stored") {
				t.Fatalf("504 says %q", body.Error)
			}
			// A fresh stream replays what is stored: the message iff 200.
			f := follow(srv.URL, "s")
			defer f.stop()
			time.Sleep(1500 * time.Millisecond)
			f.mu.Lock()
			n := len(f.got)
			f.mu.Unlock()
			switch {
			case tt.status == 200 && (n != 1 || f.count(body.MessageID) != 1):
				t.Fatalf("answered 200 but a stream got %d messages (%v)", n, f.got)
			case tt.status == 503 && n != 0:
				t.Fatalf("answered 503 (nothing stored) but a stream got %d messages", n)
			}
		})
	}
}

// A stream keeps its heartbeat while every lease renewal and every read is
// held in SDK retries by a throttled table.
func TestHeartbeatsWhileThrottled(t *testing.T) {
	inj := ddbfault.New(5)
	st := storetest.NewFaultyDynamo(t, store.Options{}, inj)
	hb := 300 * time.Millisecond
	srv := start(t, st, testConfig(func(c *config.Config) { c.HeartbeatInterval = hb }), stream.Options{})
	f := follow(srv.URL, "hb")
	defer f.stop()
	time.Sleep(500 * time.Millisecond)
	inj.Set(
		ddbfault.Rule{Ops: []string{"PutItem"}, Contains: `"pk":{"S":"conn"}`, Kind: ddbfault.Throttle, Delay: 2 * time.Second},
		ddbfault.Rule{Ops: []string{"Query"}, Kind: ddbfault.Pass, Delay: 1500 * time.Millisecond},
	)
	from := time.Now()
	time.Sleep(4 * time.Second)
	inj.Clear()
	f.mu.Lock()
	beats := append([]time.Time{from}, f.heartbeats...)
	f.mu.Unlock()
	var worst time.Duration
	for i := 1; i < len(beats); i++ {
		if beats[i].After(from) {
			worst = max(worst, beats[i].Sub(later(beats[i-1], from)))
		}
	}
	if n := f.heartbeatsSince(from); n < 8 || worst > hb+700*time.Millisecond {
		t.Fatalf("%d heartbeats in 4 s at a %v interval, worst gap %v, while the store throttled: the heartbeat waited on the store", n, hb, worst)
	}
	t.Logf("heartbeats while throttled: %d in 4 s, worst gap %v (interval %v); faults %+v", f.heartbeatsSince(from), worst, hb, inj.Counts())
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
