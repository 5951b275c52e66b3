package main

// The chat window in chromium leaves properly: hidden past its grace period
// it closes its stream and sends the close beacon; shown again it resumes
// from its last cursor and shows what arrived meanwhile, once; on pagehide
// it sends the beacon, and the server no longer counts it.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

// TestREADMEPageSnippet runs the README's snippet for pages of one's own in
// chromium, as printed but for the stream's URL and a shorter hide grace:
// hidden past the grace it closes its stream with the beacon, shown again
// it catches up exactly, and on pagehide it sends the beacon.
func TestREADMEPageSnippet(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var snippet string
	for _, m := range regexp.MustCompile("(?ms)^```js\n(.*?)^```$").FindAllStringSubmatch(string(raw), -1) {
		if strings.Contains(m[1], "sendBeacon") {
			snippet = m[1]
		}
	}
	if snippet == "" || !strings.Contains(snippet, "setTimeout(leave, 60000)") || !strings.Contains(snippet, `"https://<stream-host>/api/webhook/stream"`) {
		t.Fatalf("README.md has no page snippet with the stream URL placeholder and a 60000 ms grace:\n%s", snippet)
	}
	// The page is on an origin of its own, as a page of one's own is.
	var page atomic.Value
	pageSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page.Load().(string))
	}))
	t.Cleanup(pageSrv.Close)
	// The browser resolves localhost only (newBrowser): the page's origin
	// and the stream's are both localhost, on two ports.
	pageURL := strings.Replace(pageSrv.URL, "127.0.0.1", "localhost", 1)
	srv := startServer(t, baseEnv(map[string]string{"ALLOWED_ORIGINS": pageURL}))
	const sessionID = "readme-snippet"
	code := strings.ReplaceAll(snippet, "https://<stream-host>", srv.URL)
	code = strings.ReplaceAll(code, "setTimeout(leave, 60000)", "setTimeout(leave, 300)")
	page.Store(`<!doctype html><html><body><ul id="m"></ul><script>
const sessionId = "` + sessionID + `";
const shown = new Set();
function show(d) {
  if (shown.has(d.id)) return;
  shown.add(d.id);
  const li = document.createElement("li");
  li.textContent = d.message;
  li.dataset.id = d.id;
  document.getElementById("m").appendChild(li);
}
` + code + `</script></body></html>`)

	ctx := newBrowser(t)
	console := recordConsole(t, ctx)
	netlog := recordNetwork(t, ctx)
	defer explainFailure(t, netlog, console)
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/")); err != nil {
		t.Fatal(err)
	}
	shownIDs := func() []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#m li")).map(e => e.dataset.id)`)
	}
	waitFor(t, 10*time.Second, "the snippet's stream open", func() bool { return activeConnections(t, srv.Base) == 1 })
	first := mustPost(t, srv.Base, map[string]string{"message": "one", "sessionId": sessionID}, nil)
	waitFor(t, 5*time.Second, "the first message shown", func() bool { return len(shownIDs()) == 1 })

	eval[chromedp.Void](t, ctx, `Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
document.dispatchEvent(new Event("visibilitychange"));`)
	waitFor(t, 5*time.Second, "activeConnections 0 once hidden past the grace", func() bool { return activeConnections(t, srv.Base) == 0 })
	opened := readStreamLog(srv, sessionID).opened
	if _, ok := readStreamLog(srv, sessionID).closeRq[opened[0]]; !ok {
		t.Errorf("no close request for the hidden page's stream %s", opened[0])
	}
	hidden := mustPost(t, srv.Base, map[string]string{"message": "while hidden", "sessionId": sessionID}, nil)
	eval[chromedp.Void](t, ctx, `Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
document.dispatchEvent(new Event("visibilitychange"));`)
	waitFor(t, 10*time.Second, "the message sent while hidden shown", func() bool { return len(shownIDs()) == 2 })
	if got := shownIDs(); got[0] != first || got[1] != hidden {
		t.Errorf("shown %v, want %v then %v", got, first, hidden)
	}
	l := readStreamLog(srv, sessionID)
	if len(l.opened) != 2 || !l.resumed[1] {
		t.Fatalf("streams %v resumed %v; want a second that resumed", l.opened, l.resumed)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the close request on pagehide", func() bool {
		_, ok := readStreamLog(srv, sessionID).closeRq[l.opened[1]]
		return ok
	})
	if errs := console.list(); len(errs) != 0 {
		t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
	}
}
