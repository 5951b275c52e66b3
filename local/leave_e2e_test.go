package main

// The chat window in chromium leaves properly: hidden past its grace period
// it closes its stream and sends the close beacon; shown again it resumes
// from its last cursor and shows what arrived meanwhile, once; on pagehide
// it sends the beacon, and the server no longer counts it.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/webhook-relay/webhook-relay/internal/logkey"
)

// activeConnections is GET /api/webhook's count of open streams.
func activeConnections(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/api/webhook")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		ActiveConnections int `json:"activeConnections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.ActiveConnections
}

// streamLog is what the relay's log says of one session's streams: the
// connection ids opened (in order), those closed by a close request, and
// whether each open resumed.
type streamLog struct {
	opened  []string
	resumed []bool
	closeRq map[string]string // connection id -> where the close found it
}

func readStreamLog(srv *testServer, sessionID string) streamLog {
	l := streamLog{closeRq: map[string]string{}}
	for _, line := range strings.Split(srv.Log.String(), "\n") {
		var e struct {
			Msg          string `json:"msg"`
			Session      string `json:"session"`
			ConnectionID string `json:"connectionId"`
			Resumed      bool   `json:"resumed"`
			Found        string `json:"found"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "stream opened" && e.Session == logkey.Session("", sessionID):
			l.opened = append(l.opened, e.ConnectionID)
			l.resumed = append(l.resumed, e.Resumed)
		case e.Msg == "stream close requested":
			l.closeRq[e.ConnectionID] = e.Found
		}
	}
	return l
}

func TestPageLeavesAndPauses(t *testing.T) {
	t.Parallel()
	srv := startServer(t, baseEnv(nil))
	ctx := newBrowser(t)
	console := recordConsole(t, ctx)
	netlog := recordNetwork(t, ctx)
	defer explainFailure(t, netlog, console)

	// A short grace, so the test need not wait a minute.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?hideGraceMs=300")); err != nil {
		t.Fatalf("open %s: %v", srv.URL, err)
	}
	waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, ctx) == "live" })
	sessionID := eval[string](t, ctx, `document.getElementById("session-id").textContent`)
	before := mustPost(t, srv.Base, map[string]string{"message": "before hiding", "sessionId": sessionID}, nil)
	waitBubbles(t, ctx, before)
	if n := activeConnections(t, srv.Base); n != 1 {
		t.Fatalf("activeConnections = %d with the page open, want 1", n)
	}

	// Hidden (the visibility the browser reports, emulated): after the
	// grace the page closes its stream and sends the beacon for it.
	visibility := func(state string) {
		t.Helper()
		eval[chromedp.Void](t, ctx, `Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "`+state+`"});
document.dispatchEvent(new Event("visibilitychange"));`)
	}
	visibility("hidden")
	waitFor(t, 5*time.Second, `#status "paused" after the grace`, func() bool { return statusOf(t, ctx) == "paused" })
	waitFor(t, 5*time.Second, "activeConnections 0 while hidden", func() bool { return activeConnections(t, srv.Base) == 0 })
	first := readStreamLog(srv, sessionID)
	if len(first.opened) != 1 {
		t.Fatalf("%d streams opened before hiding, want 1", len(first.opened))
	}
	waitFor(t, 5*time.Second, "the close request for the hidden page's stream", func() bool {
		_, ok := readStreamLog(srv, sessionID).closeRq[first.opened[0]]
		return ok
	})
	if closes := netlog.list("/api/webhook/stream/close"); len(closes) != 1 || closes[0].URL.Query().Get("connectionId") != first.opened[0] {
		t.Errorf("close requests sent while hidden: %+v, want one for connection %s", closes, first.opened[0])
	}

	// Messages while hidden, then visible again: shown once each, in order,
	// through a resume from the last cursor.
	hidden1 := mustPost(t, srv.Base, map[string]string{"message": "while hidden, 1", "sessionId": sessionID}, nil)
	hidden2 := mustPost(t, srv.Base, map[string]any{"message": "while hidden, broadcast", "sessionId": nil}, nil)
	time.Sleep(200 * time.Millisecond)
	if n := eval[int](t, ctx, `document.querySelectorAll("#messages .msg").length`); n != 1 {
		t.Fatalf("%d messages shown while paused, want only the first", n)
	}
	visibility("visible")
	waitBubbles(t, ctx, hidden1, hidden2)
	waitFor(t, 10*time.Second, `#status "live" again`, func() bool { return statusOf(t, ctx) == "live" })
	got := bubbles(t, ctx)
	for _, id := range []string{before, hidden1, hidden2} {
		if len(got[id]) != 1 {
			t.Errorf("message %s shown %d times, want once", id, len(got[id]))
		}
	}
	order := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#messages .msg")).map(e => e.dataset.id)`)
	if strings.Join(order, " ") != strings.Join([]string{before, hidden1, hidden2}, " ") {
		t.Errorf("messages in order %v, want %v", order, []string{before, hidden1, hidden2})
	}
	second := readStreamLog(srv, sessionID)
	if len(second.opened) != 2 || !second.resumed[1] {
		t.Fatalf("streams after showing: %v resumed %v; want a second one that resumed", second.opened, second.resumed)
	}

	// Leaving the page: pagehide sends the beacon for the open stream.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the close request sent on pagehide", func() bool {
		_, ok := readStreamLog(srv, sessionID).closeRq[second.opened[1]]
		return ok
	})
	waitFor(t, 5*time.Second, "activeConnections 0 after leaving", func() bool { return activeConnections(t, srv.Base) == 0 })
	if errs := console.list(); len(errs) != 0 {
		t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
	}
}
