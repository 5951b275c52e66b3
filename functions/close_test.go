//go:build unix

package functions_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

// testStreamCloseUnderEmulator: the real stream binary, as on AWS: the
// client of a stream leaves and nothing tells the invocation, which would
// run (and be billed) to its planned end; the page's close beacon reaches
// the function as a second, short invocation in another environment, and
// the stream notices it through the partition it reads anyway, ending within
// POLL_INTERVAL + 1 s. Presence drops at once. front is the function URL or
// the REST API, as in testStreamUnderEmulator.
func testStreamCloseUnderEmulator(t *testing.T, endpoint, bootstrap string, front func(*lambdaemu.Emulator) http.Handler) {
	const poll = 200 * time.Millisecond
	table, st := newTable(t, endpoint)
	// A 30 s timeout: the planned end, were the close not noticed, is at
	// 28 s. Two environments: the stream's is busy, the close gets the other.
	e := startStream(t, bootstrap, 30*time.Second, 2, functionEnv(endpoint, table,
		"HEARTBEAT_INTERVAL=1s", "POLL_INTERVAL="+poll.String(), "MAX_STREAM_DURATION=14m",
		"STREAM_DEADLINE_MARGIN=2s", "ALLOWED_ORIGINS=http://localhost:3000"))
	srv := httptest.NewServer(front(e))
	defer srv.Close()

	for _, session := range []string{"x", ""} { // a session's partition, and broadcast
		resp, events, _ := openStream(t, srv.URL+"/api/webhook/stream?sessionId="+session, "")
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		ev, _ := nextEvent(t, events, 10*time.Second)
		var connected struct {
			Type, ConnectionID string
		}
		if err := json.Unmarshal([]byte(ev.Data), &connected); err != nil || connected.Type != "connected" || connected.ConnectionID == "" {
			t.Fatalf("first event %q, want connected with its id", ev.Data)
		}
		if n, err := st.CountLeases(t.Context()); err != nil || n != 1 {
			t.Fatalf("leases with the stream open: %d, %v; want 1", n, err)
		}
		// The tab closes: the connection drops, the invocation runs on.
		resp.Body.Close()
		time.Sleep(300 * time.Millisecond)
		if n, _ := st.CountLeases(t.Context()); n != 1 {
			t.Fatalf("leases after the client left, before the beacon: %d; want 1 (Lambda does not tell the function)", n)
		}

		// The beacon.
		closed := time.Now()
		cr, err := http.Post(srv.URL+"/api/webhook/stream/close?connectionId="+connected.ConnectionID, "text/plain", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		cr.Body.Close()
		answered := time.Now() // the bound runs from the answer: a cold start of the close's environment is not the stream's
		if cr.StatusCode != http.StatusNoContent {
			t.Fatalf("close answered %d, want 204", cr.StatusCode)
		}
		if n, err := st.CountLeases(t.Context()); err != nil || n != 0 {
			t.Errorf("leases right after the 204: %d, %v; want 0", n, err)
		}
		// The stream's invocation ends within POLL_INTERVAL + 1 s.
		var stream *lambdaemu.Invocation
		deadline := answered.Add(poll + time.Second + 500*time.Millisecond)
		for stream == nil && time.Now().Before(deadline) {
			for _, inv := range e.Invocations() {
				if inv.ClientGone && inv.End.After(closed) {
					stream = &inv
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if stream == nil {
			t.Fatalf("session %q: the stream's invocation still runs %v after the close's 204", session, time.Since(answered))
		}
		took := stream.End.Sub(answered)
		t.Logf("session %q: stream invocation ended %v after the close's 204 (billed %v in all)", session, took.Round(time.Millisecond), stream.Billed)
		if took > poll+time.Second {
			t.Errorf("the stream ended %v after the close's 204, want within POLL_INTERVAL + 1 s (%v)", took, poll+time.Second)
		}
	}
}
