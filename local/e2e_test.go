package main

// The chat window in a real browser: Debian's chromium driven with chromedp,
// against the command's run serving in-process on 127.0.0.1.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// findBrowser returns the chromium to drive: $CHROME_PATH, else Debian's
// chromium, else chromium-browser. Missing: fail with CI=true, else skip.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHROME_PATH=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Unavailable(t, "chromium is not available (apt-get install -y chromium, or set CHROME_PATH)")
	return ""
}

// newBrowser starts a headless chromium with a fresh profile that talks to
// nothing but loopback, and returns a context for its first tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	execPath := findBrowser(t)
	profile, err := os.MkdirTemp("", "webhook-relay-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers can still write for a moment after it exits.
		for i := 0; i < 50; i++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.WindowSize(1000, 760),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
		// Every host name but localhost fails to resolve: nothing leaves the
		// machine even if something tried.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost"),
		chromedp.Flag("lang", "en-US"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", execPath, err)
	}
	return ctx
}

// consoleRecorder keeps the page's console errors, uncaught exceptions and
// browser-log errors, and any JavaScript dialog (which an injected
// <script>alert(1)</script> would open).
type consoleRecorder struct {
	mu     sync.Mutex
	errors []string
}

func recordConsole(t *testing.T, ctx context.Context) *consoleRecorder {
	r := &consoleRecorder{}
	lctx, cancel := context.WithCancel(ctx)
	msgs := chromedp.Console(lctx)
	dialogs := chromedp.Events(lctx, page.JavascriptDialogOpening)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				r.add(fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			}
		}
	})
	wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			r.add(fmt.Sprintf("a JavaScript %s dialog opened: %q", ev.Type, ev.Message))
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *consoleRecorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, s)
}

func (r *consoleRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// eval evaluates a JavaScript expression in the page, with a bound.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls cond every 50 ms until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statusOf(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `document.getElementById("status").textContent`)
}

// bubble is what the page shows for one webhook message.
type bubble struct {
	Text         string  `json:"text"`
	TextElements int     `json:"textElements"` // element children of .text: must be 0
	Badge        string  `json:"badge"`
	BadgeSVG     bool    `json:"badgeSvg"`
	InBubble     bool    `json:"badgeInBubble"`
	Broadcast    bool    `json:"broadcast"`
	Time         string  `json:"time"`
	Background   string  `json:"bg"`
	Color        string  `json:"color"`
	AlignLeft    bool    `json:"alignLeft"`
	Width        float64 `json:"width"`
	ParentWidth  float64 `json:"parentWidth"`
}

// bubblesJS maps each message id to its bubbles (a list, to count them).
const bubblesJS = `(() => {
  const out = {};
  for (const el of document.querySelectorAll("#messages .msg.webhook")) {
    const text = el.querySelector(".text");
    const badge = el.querySelector(".badge");
    const cs = getComputedStyle(el);
    const r = el.getBoundingClientRect(), pr = el.parentElement.getBoundingClientRect();
    (out[el.dataset.id] = out[el.dataset.id] || []).push({
      text: text ? text.textContent : null,
      textElements: text ? text.childElementCount : -1,
      badge: badge ? badge.textContent.trim() : "",
      badgeSvg: !!(badge && badge.querySelector("svg")),
      badgeInBubble: !!(badge && el.contains(badge)),
      broadcast: !!el.querySelector(".broadcast:not([hidden])"),
      time: (el.querySelector("time") || {}).textContent || "",
      bg: cs.backgroundColor,
      color: cs.color,
      alignLeft: Math.abs(r.left - pr.left) < 2,
      width: r.width,
      parentWidth: pr.width,
    });
  }
  return out;
})()`

func bubbles(t *testing.T, ctx context.Context) map[string][]bubble {
	t.Helper()
	return eval[map[string][]bubble](t, ctx, bubblesJS)
}

// waitBubbles waits until every id has a bubble.
func waitBubbles(t *testing.T, ctx context.Context, ids ...string) map[string][]bubble {
	t.Helper()
	var got map[string][]bubble
	waitFor(t, 10*time.Second, fmt.Sprintf("messages %v in the page", ids), func() bool {
		got = bubbles(t, ctx)
		for _, id := range ids {
			if len(got[id]) == 0 {
				return false
			}
		}
		return true
	})
	return got
}

var rgbRE = regexp.MustCompile(`^rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*([0-9.]+))?\)$`)

// parseRGB parses a computed color; alpha is 1 when absent.
func parseRGB(t *testing.T, s string) (r, g, b, a float64) {
	t.Helper()
	m := rgbRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("cannot parse computed color %q", s)
	}
	r, _ = strconv.ParseFloat(m[1], 64)
	g, _ = strconv.ParseFloat(m[2], 64)
	b, _ = strconv.ParseFloat(m[3], 64)
	a = 1
	if m[4] != "" {
		a, _ = strconv.ParseFloat(m[4], 64)
	}
	return r, g, b, a
}

// checkPurple asserts a solid purple: opaque, blue clearly above green, red
// above green, blue the strongest channel.
func checkPurple(t *testing.T, what, color string) {
	t.Helper()
	r, g, b, a := parseRGB(t, color)
	if a != 1 || b < g+80 || r < g+30 || b < r {
		t.Errorf("%s background %s is not a solid purple", what, color)
	}
}

// contrast is the WCAG 2 contrast ratio of two opaque computed colors.
func contrast(t *testing.T, c1, c2 string) float64 {
	t.Helper()
	opaque := func(c string) testutil.RGB {
		r, g, b, _ := parseRGB(t, c)
		return testutil.RGB{R: r, G: g, B: b}
	}
	return testutil.Contrast(opaque(c1), opaque(c2))
}

// setColorScheme emulates prefers-color-scheme (and reduced motion, so that
// no bubble is caught mid-animation).
func setColorScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{
			{Name: "prefers-color-scheme", Value: scheme},
			{Name: "prefers-reduced-motion", Value: "reduce"},
		},
	})
	if err != nil {
		t.Fatalf("emulate prefers-color-scheme: %s: %v", scheme, err)
	}
	want := eval[bool](t, ctx, `matchMedia("(prefers-color-scheme: `+scheme+`)").matches`)
	if !want {
		t.Fatalf("prefers-color-scheme: %s did not take effect", scheme)
	}
}

var uuidV4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestChatWindowInBrowser is the end-to-end test of the chat window.
func TestChatWindowInBrowser(t *testing.T) {
	t.Parallel()
	start := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }

	// Streams end after 4 s (the planned end a Lambda has), and the browser
	// waits 2 s before it reconnects: a window in which to post.
	srv := startServer(t, baseEnv(map[string]string{
		"MAX_STREAM_DURATION": "4s",
		"HEARTBEAT_INTERVAL":  "1s",
		"RETRY_MS":            "2000",
	}))
	// The screenshots' server: streams that stay open. Both servers start
	// before the browser so that they stop after it (cleanups run in reverse):
	// a browser's idle pre-opened connection would hold a server's shutdown.
	shotSrv := startServer(t, baseEnv(nil))
	ctx := newBrowser(t)
	phase("browser started")
	console := recordConsole(t, ctx)

	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1000, 760),
		chromedp.Navigate(srv.URL+"/"),
	); err != nil {
		t.Fatalf("open %s: %v", srv.URL, err)
	}
	setColorScheme(t, ctx, "light")
	waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, ctx) == "live" })
	phase("page live")
	// From now on, remember every state the status shows.
	eval[chromedp.Void](t, ctx, `window.__states = [];
new MutationObserver(() => window.__states.push(document.getElementById("status").dataset.state))
  .observe(document.getElementById("status"), {attributes: true, attributeFilter: ["data-state"], childList: true, characterData: true, subtree: true});`)

	// The session id: crypto.randomUUID()'s output, kept in sessionStorage,
	// and in the ready-to-paste curl command.
	ids := eval[[]string](t, ctx, `[document.getElementById("session-id").textContent, sessionStorage.getItem("webhookRelaySessionId"), document.getElementById("curl").textContent]`)
	sessionID, curlCmd := ids[0], ids[2]
	if !uuidV4RE.MatchString(sessionID) {
		t.Fatalf("session id %q is not a UUID v4", sessionID)
	}
	if ids[1] != sessionID {
		t.Errorf("sessionStorage webhookRelaySessionId = %q, page shows %q", ids[1], sessionID)
	}
	if !strings.Contains(curlCmd, srv.URL+"/api/webhook") || !strings.Contains(curlCmd, `"sessionId":"`+sessionID+`"`) {
		t.Errorf("curl command %q does not target %s/api/webhook with this session", curlCmd, srv.URL)
	}

	// A message for another session, then this session's, a broadcast, and
	// markup that must stay text.
	const script = `<script>alert(1)</script>`
	otherID := mustPost(t, srv.Base, map[string]string{"message": "for another window", "sessionId": "00000000-0000-4000-8000-000000000000"}, nil)
	targetedID := mustPost(t, srv.Base, map[string]string{"message": "Hello, this window only", "sessionId": sessionID}, nil)
	broadcastID := mustPost(t, srv.Base, map[string]any{"message": "Hello, every window", "sessionId": nil}, nil)
	scriptID := mustPost(t, srv.Base, map[string]string{"message": script, "sessionId": sessionID}, nil)

	got := waitBubbles(t, ctx, targetedID, broadcastID, scriptID)
	phase("messages shown")
	var lightBG string
	for _, c := range []struct {
		id, text  string
		broadcast bool
	}{
		{targetedID, "Hello, this window only", false},
		{broadcastID, "Hello, every window", true},
		{scriptID, script, false},
	} {
		bs := got[c.id]
		if len(bs) != 1 {
			t.Errorf("message %q shown %d times, want once", c.text, len(bs))
			continue
		}
		b := bs[0]
		if b.Text != c.text || b.TextElements != 0 {
			t.Errorf("message shows text %q with %d elements, want the text %q and no elements", b.Text, b.TextElements, c.text)
		}
		if b.Badge != "Webhook" || !b.BadgeSVG || !b.InBubble {
			t.Errorf("message %q: badge %q (svg %v, inside the bubble %v), want a Webhook badge with an icon inside the bubble", c.text, b.Badge, b.BadgeSVG, b.InBubble)
		}
		if b.Broadcast != c.broadcast {
			t.Errorf("message %q: broadcast label %v, want %v", c.text, b.Broadcast, c.broadcast)
		}
		if b.Time == "" {
			t.Errorf("message %q shows no time", c.text)
		}
		if !b.AlignLeft {
			t.Errorf("message %q is not left-aligned", c.text)
		}
		if b.Width >= b.ParentWidth*0.9 {
			t.Errorf("message %q is %.0fpx wide in a %.0fpx list; want a bubble sized to its content", c.text, b.Width, b.ParentWidth)
		}
		checkPurple(t, "light mode: message "+c.text, b.Background)
		if cr := contrast(t, b.Color, b.Background); cr < 4.5 {
			t.Errorf("light mode: text %s on %s has contrast %.2f, want at least 4.5", b.Color, b.Background, cr)
		}
		lightBG = b.Background
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#messages script").length`); n != 0 {
		t.Errorf("%d script elements in the message list", n)
	}
	if len(got[otherID]) != 0 || eval[bool](t, ctx, `document.getElementById("messages").textContent.includes("for another window")`) {
		t.Errorf("the message for another session is shown")
	}

	// The planned end of the stream: the page shows "reconnecting", a
	// message posted then arrives after the reconnect, once.
	waitFor(t, 10*time.Second, `#status "reconnecting" after the stream's planned end`, func() bool {
		return statusOf(t, ctx) == "reconnecting"
	})
	phase("stream ended, page reconnecting")
	gapID := mustPost(t, srv.Base, map[string]string{"message": "Posted while this window was reconnecting", "sessionId": sessionID}, nil)
	if s := statusOf(t, ctx); s != "reconnecting" {
		t.Logf("note: the page was already %q when the gap message was accepted", s)
	}
	got = waitBubbles(t, ctx, gapID)
	waitFor(t, 10*time.Second, `#status "live" again`, func() bool { return statusOf(t, ctx) == "live" })
	phase("reconnected")
	states := eval[[]string](t, ctx, `window.__states`)
	if !regexp.MustCompile(`reconnecting( reconnecting)*( live)+`).MatchString(strings.Join(states, " ")) {
		t.Errorf("status went through %v, want reconnecting then live", states)
	}
	// After the resume: every message still exactly once, none lost.
	got = bubbles(t, ctx)
	for _, id := range []string{targetedID, broadcastID, scriptID, gapID} {
		if len(got[id]) != 1 {
			t.Errorf("after the reconnect message %s is shown %d times, want once", id, len(got[id]))
		}
	}
	if len(got[otherID]) != 0 {
		t.Errorf("after the reconnect the message for another session is shown")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#messages .msg").length`); n != 4 {
		t.Errorf("%d messages in the list, want 4", n)
	}
	// The browser resumed: its reconnect carried Last-Event-ID.
	checkResumed(t, srv, sessionID)

	// Dark mode: still a solid purple, not the light one, still readable.
	setColorScheme(t, ctx, "dark")
	got = bubbles(t, ctx)
	if len(got[targetedID]) == 0 {
		t.Fatalf("dark mode: the targeted message is gone")
	}
	dark := got[targetedID][0]
	checkPurple(t, "dark mode: message", dark.Background)
	if dark.Background == lightBG {
		t.Errorf("dark mode bubble %s is the light mode one", dark.Background)
	}
	if cr := contrast(t, dark.Color, dark.Background); cr < 4.5 {
		t.Errorf("dark mode: text %s on %s has contrast %.2f, want at least 4.5", dark.Color, dark.Background, cr)
	}

	if errs := console.list(); len(errs) != 0 {
		t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
	}

	phase("checks done")
	t.Run("screenshots", func(t *testing.T) { screenshots(t, ctx, shotSrv) })
	phase("screenshots done")
}

// checkResumed reads the server's log: the session's streams after the first
// must have resumed from the browser's Last-Event-ID.
func checkResumed(t *testing.T, srv *testServer, sessionID string) {
	t.Helper()
	l := readStreamLog(srv, sessionID)
	if opened, resumed := len(l.opened), l.resumedCount(); opened < 2 || resumed != opened-1 {
		t.Errorf("the server log shows %d streams opened for the session, %d of them resumed; want the reconnects (all but the first) resumed\n%s",
			opened, resumed, srv.Log.String())
	}
}

// screenshots saves the chat window in light and dark mode to test-output/
// and, with UPDATE_SCREENSHOTS=1, to docs/ for the README. Another server
// and a fresh tab: streams that stay open, a new session, a few messages of
// each kind, and the curl command shown for the default port as `make run`
// prints it (the page's ?api= override changes only that text).
func screenshots(t *testing.T, browserCtx context.Context, srv *testServer) {
	start := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
	defer phase("end")
	ctx, cancel := chromedp.NewContext(browserCtx)
	defer cancel()
	console := recordConsole(t, ctx)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1000, 760),
		chromedp.Navigate(srv.URL+"/?api=http://localhost:3000"),
	); err != nil {
		t.Fatal(err)
	}
	phase("tab open")
	setColorScheme(t, ctx, "light")
	waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, ctx) == "live" })
	phase("live")
	sessionID := eval[string](t, ctx, `document.getElementById("session-id").textContent`)

	zeroth := mustPost(t, srv.Base, map[string]string{"message": "Good morning! 3 new listings match your saved search.", "sessionId": sessionID}, nil)
	first := mustPost(t, srv.Base, map[string]string{"message": "Price alert: Marina apartments -5%!", "sessionId": sessionID}, nil)
	second := mustPost(t, srv.Base, map[string]string{"message": "Scheduled maintenance tonight at 23:00 UTC. Chats stay available."}, nil)
	waitBubbles(t, ctx, zeroth, first, second)
	phase("messages")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#input"), "Thanks! Which buildings?"),
		chromedp.Click(chromedp.CSS("#send")),
	); err != nil {
		t.Fatalf("type a message: %v", err)
	}
	waitFor(t, 5*time.Second, "the typed message", func() bool {
		return eval[bool](t, ctx, `(() => { const u = document.querySelector("#messages .msg.user .text"); return !!u && u.textContent === "Thanks! Which buildings?"; })()`)
	})
	if v := eval[string](t, ctx, `document.getElementById("input").value`); v != "" {
		t.Errorf("the message box still holds %q after sending", v)
	}
	third := mustPost(t, srv.Base, map[string]string{"message": "Alert: New property listed in Dubai Marina!", "sessionId": sessionID}, nil)
	waitBubbles(t, ctx, third)
	phase("typed + third")
	// User messages are right-aligned, webhook ones left: distinguishable.
	if !eval[bool](t, ctx, `(() => { const u = document.querySelector("#messages .msg.user").getBoundingClientRect(), p = document.getElementById("messages").getBoundingClientRect(); return Math.abs(u.right - p.right) < 2; })()`) {
		t.Errorf("the user message is not right-aligned")
	}
	eval[chromedp.Void](t, ctx, `document.activeElement && document.activeElement.blur()`)

	outDir := filepath.Join(repoRoot, "test-output")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	update := os.Getenv("UPDATE_SCREENSHOTS") == "1"
	for _, scheme := range []string{"light", "dark"} {
		setColorScheme(t, ctx, scheme)
		if s := statusOf(t, ctx); s != "live" {
			t.Errorf("%s screenshot: status %q, want live", scheme, s)
		}
		png := screenshot(t, ctx)
		phase("shot " + scheme)
		name := "chat-" + scheme + ".png"
		if err := os.WriteFile(filepath.Join(outDir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", filepath.Join(outDir, name))
		if update {
			p := filepath.Join(repoRoot, "docs", name)
			if err := os.WriteFile(p, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("UPDATE_SCREENSHOTS=1: wrote %s", p)
		}
	}
	if errs := console.list(); len(errs) != 0 {
		t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
	}
}

// screenshot captures the page as a PNG, full page at the emulated viewport.
func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG")
	}
	return png
}
