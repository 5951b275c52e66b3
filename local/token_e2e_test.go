package main

// The chat window in chromium with stream tokens on: the page gets a token
// for its session from the dev-token endpoint before it connects, renews it
// ahead of its expiry and reconnects with the new one, resumes exactly over
// planned ends, and never shows a refused stream request. Then ?stream=: a
// stream origin the operator did not allow is ignored with a notice, one
// in PAGE_STREAM_ORIGINS is used.

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/webhook-relay/webhook-relay/internal/token"
)

// netRequest is one request of the page that the test watches: the stream
// and the dev-token endpoint.
type netRequest struct {
	URL     *url.URL
	Type    network.ResourceType
	Sent    time.Time // the browser's wall clock
	Status  int64     // 0 until the response headers arrive
	Failure string    // the error text of a load that failed (not when canceled)
}

// netRecorder keeps the page's requests to /api/webhook/stream, its close
// endpoint and the dev-token endpoint, in the order the browser sent them.
type netRecorder struct {
	mu   sync.Mutex
	reqs []*netRequest
	byID map[network.RequestID]*netRequest
}

func recordNetwork(t *testing.T, ctx context.Context) *netRecorder {
	t.Helper()
	r := &netRecorder{byID: map[network.RequestID]*netRequest{}}
	lctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	// Listen, not Events: the callback sees each event in the browser's order.
	err := chromedp.Listen(lctx, func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			u, err := url.Parse(ev.Request.URL)
			if err != nil || (u.Path != "/api/webhook/stream" && u.Path != "/api/webhook/stream/close" && u.Path != "/api/webhook/dev-token") {
				return
			}
			req := &netRequest{URL: u, Type: ev.Type, Sent: time.UnixMicro(int64(ev.WallTime.Float64() * 1e6))}
			r.reqs = append(r.reqs, req)
			r.byID[ev.RequestID] = req
		case *network.EventResponseReceived:
			if req := r.byID[ev.RequestID]; req != nil {
				req.Status = ev.Response.Status
			}
		case *network.EventLoadingFailed:
			if req := r.byID[ev.RequestID]; req != nil && !ev.Canceled {
				req.Failure = ev.ErrorText
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to the page's network events: %v", err)
	}
	return r
}

// list returns copies of the requests to path so far.
func (r *netRecorder) list(path string) []netRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netRequest
	for _, req := range r.reqs {
		if req.URL.Path == path {
			out = append(out, *req)
		}
	}
	return out
}

// explainFailure logs, when the test failed, the page's requests that the
// test watched and its console errors (a fatal wait skips the checks that
// would show them).
func explainFailure(t *testing.T, r *netRecorder, console *consoleRecorder) {
	if !t.Failed() {
		return
	}
	r.mu.Lock()
	for _, req := range r.reqs {
		t.Logf("%s %s %s: status %d %s", req.Sent.Format("15:04:05.000"), req.Type, req.URL, req.Status, req.Failure)
	}
	r.mu.Unlock()
	for _, e := range console.list() {
		t.Logf("console: %s", e)
	}
}

// streamToken is the token a stream request carried, checked with the
// relay's own keys at the moment the browser sent it.
type streamToken struct {
	raw    string
	claims token.Claims
}

func requestToken(t *testing.T, keys *token.Keys, req netRequest) streamToken {
	t.Helper()
	raw := req.URL.Query().Get("token")
	if raw == "" {
		t.Fatalf("stream request %s carries no ?token=", req.URL.Redacted())
	}
	c, err := keys.Verify(raw, req.Sent)
	if err != nil {
		t.Fatalf("the token of the stream request sent at %s does not verify then: %v", req.Sent.Format(time.RFC3339Nano), err)
	}
	return streamToken{raw, c}
}

// streamOpenedLog is what the relay's log says of the streams it opened for
// a session (tokens on: the session id is logged as it is).
func streamOpenedLog(t *testing.T, srv *testServer, sessionID string) (opened, resumed int) {
	t.Helper()
	l := readStreamLog(srv, sessionID)
	return len(l.opened), l.resumedCount()
}

// getStatus answers a GET with the status, a header and the body.
func getStatus(t *testing.T, u string, header string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, resp.Header.Get(header), string(body)
}

// TestChatWindowWithStreamTokens: the chat window with STREAM_TOKEN_SECRET
// set, in chromium.
func TestChatWindowWithStreamTokens(t *testing.T) {
	t.Parallel()
	start := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }

	const secret = "the browser test's stream token secret: 32+ bytes"
	keys, err := token.NewKeys([][]byte{[]byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	// Streams end by plan after 4 s and the browser waits 2 s to reconnect
	// (a gap to post in); the page's tokens live 38 s, so that it renews
	// one (30 s before its expiry) within the test.
	const tokenTTL = 38 * time.Second
	srv := startServerWith(t, baseEnv(map[string]string{
		"STREAM_TOKEN_SECRET": secret,
		"MAX_STREAM_DURATION": "4s",
		"HEARTBEAT_INTERVAL":  "1s",
		"RETRY_MS":            "2000",
	}), adapterOptions{devTokenTTL: tokenTTL})
	// The ?stream= checks: a page whose server allows another relay's
	// origin, and that relay (the same secret, CORS for that page). Its port
	// is taken first so that the page's server can name it.
	targetPort := freePort(t)
	// localhost, not 127.0.0.1: the browser resolves no other name, and no
	// address literal either.
	targetOrigin := "http://localhost:" + itoa(targetPort)
	allowing := startServer(t, baseEnv(map[string]string{
		"STREAM_TOKEN_SECRET": secret,
		"PAGE_STREAM_ORIGINS": targetOrigin,
	}))
	target := startServer(t, baseEnv(map[string]string{
		"PORT":                itoa(targetPort),
		"STREAM_TOKEN_SECRET": secret,
		"ALLOWED_ORIGINS":     allowing.URL,
	}))

	// Without a token there is no stream, and the refusal says how to
	// authenticate.
	code, auth, body := getStatus(t, srv.Base+"/api/webhook/stream?sessionId=0b9e4c1a-7f5d-4e2a-9c3b-1d2e3f4a5b6c", "WWW-Authenticate")
	if code != http.StatusUnauthorized || !strings.HasPrefix(auth, "Bearer") || !strings.Contains(body, `"success":false`) {
		t.Fatalf("a stream without a token: %d, WWW-Authenticate %q, %s; want 401 with a Bearer challenge", code, auth, body)
	}

	ctx := newBrowser(t)
	phase("browser started")
	console := recordConsole(t, ctx)
	netlog := recordNetwork(t, ctx)
	defer explainFailure(t, netlog, console)

	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1000, 760),
		chromedp.Navigate(srv.URL+"/"),
	); err != nil {
		t.Fatalf("open %s: %v", srv.URL, err)
	}
	waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, ctx) == "live" })
	phase("page live")
	eval[chromedp.Void](t, ctx, `window.__states = [];
new MutationObserver(() => window.__states.push(document.getElementById("status").dataset.state))
  .observe(document.getElementById("status"), {attributes: true, attributeFilter: ["data-state"], childList: true, characterData: true, subtree: true});`)
	sessionID := eval[string](t, ctx, `document.getElementById("session-id").textContent`)
	if !uuidV4RE.MatchString(sessionID) {
		t.Fatalf("session id %q is not a UUID v4", sessionID)
	}

	// The page asked for a token first, then opened its stream with it: a
	// token for this session, of the configured lifetime.
	tokens := netlog.list("/api/webhook/dev-token")
	streams := netlog.list("/api/webhook/stream")
	if len(tokens) != 1 || tokens[0].Status != http.StatusOK || len(streams) != 1 || streams[0].Type != network.ResourceTypeEventSource {
		t.Fatalf("before the page was live: token requests %+v, stream requests %+v; want one token (200) and one EventSource", tokens, streams)
	}
	if tokens[0].Sent.After(streams[0].Sent) {
		t.Errorf("the stream was requested before the token")
	}
	first := requestToken(t, keys, streams[0])
	if first.claims.SessionID != sessionID {
		t.Fatalf("the page's token is for session %q, the page's is %q", first.claims.SessionID, sessionID)
	}
	if life := first.claims.ExpiresAt.Sub(streams[0].Sent); life > tokenTTL || life < tokenTTL-3*time.Second {
		t.Errorf("the page's first token lives %s from the request, want about %s", life, tokenTTL)
	}

	// This session's message and a broadcast arrive; another session's not.
	otherID := mustPost(t, srv.Base, map[string]string{"message": "for another window", "sessionId": "00000000-0000-4000-8000-000000000000"}, nil)
	targetedID := mustPost(t, srv.Base, map[string]string{"message": "Hello, this window only", "sessionId": sessionID}, nil)
	broadcastID := mustPost(t, srv.Base, map[string]any{"message": "Hello, every window", "sessionId": nil}, nil)
	waitBubbles(t, ctx, targetedID, broadcastID)
	phase("messages shown")

	// The planned end: a message posted while the page reconnects arrives
	// after the reconnect, once.
	waitFor(t, 10*time.Second, `#status "reconnecting" after the stream's planned end`, func() bool {
		return statusOf(t, ctx) == "reconnecting"
	})
	phase("stream ended, page reconnecting")
	gapID := mustPost(t, srv.Base, map[string]string{"message": "Posted while this window was reconnecting", "sessionId": sessionID}, nil)
	waitBubbles(t, ctx, gapID)
	waitFor(t, 10*time.Second, `#status "live" again`, func() bool { return statusOf(t, ctx) == "live" })
	phase("reconnected")

	// Renewal: 30 s before the first token's expiry the page gets a new one
	// and reconnects with it, before the old one runs out.
	renewBy := first.claims.ExpiresAt.Add(-30 * time.Second)
	var renewed netRequest
	waitFor(t, time.Until(renewBy)+10*time.Second, "a stream request with a renewed token", func() bool {
		for _, s := range netlog.list("/api/webhook/stream") {
			if q := s.URL.Query().Get("token"); q != "" && q != first.raw {
				renewed = s
				return true
			}
		}
		return false
	})
	phase("token renewed")
	second := requestToken(t, keys, renewed)
	if second.claims.SessionID != sessionID || !second.claims.ExpiresAt.After(first.claims.ExpiresAt) {
		t.Errorf("the renewed token grants %+v; want session %s and a later expiry than %s", second.claims, sessionID, first.claims.ExpiresAt)
	}
	if late := renewed.Sent.Sub(renewBy); late > 3*time.Second {
		t.Errorf("the page reconnected with a renewed token %s after it was due (30 s before the old one's expiry)", late)
	}
	if renewed.URL.Query().Get("lastEventId") == "" {
		t.Errorf("the reconnect with the renewed token does not resume: %s", renewed.URL.Redacted())
	}
	waitFor(t, 10*time.Second, `#status "live" on the renewed token`, func() bool { return statusOf(t, ctx) == "live" })
	afterID := mustPost(t, srv.Base, map[string]string{"message": "Posted after the renewal", "sessionId": sessionID}, nil)
	waitBubbles(t, ctx, afterID)
	phase("message after the renewal shown")

	// Every message exactly once, none for the other session.
	got := bubbles(t, ctx)
	for _, id := range []string{targetedID, broadcastID, gapID, afterID} {
		if len(got[id]) != 1 {
			t.Errorf("message %s is shown %d times, want once", id, len(got[id]))
		}
	}
	if len(got[otherID]) != 0 {
		t.Errorf("the message for another session is shown")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#messages .msg").length`); n != 4 {
		t.Errorf("%d messages in the list, want 4", n)
	}
	states := eval[[]string](t, ctx, `window.__states`)
	if !regexp.MustCompile(`reconnecting( reconnecting)*( live)+`).MatchString(strings.Join(states, " ")) {
		t.Errorf("status went through %v, want reconnecting then live", states)
	}

	// Every stream request carried a token for this session that was fresh
	// when sent (more than the page's 15 s margin left) and was answered
	// 200: no refused request, which the console would show as an error.
	streams = netlog.list("/api/webhook/stream")
	if len(streams) < 3 {
		t.Errorf("%d stream requests, want the first, a reconnect after the planned end and one with the renewed token", len(streams))
	}
	for i, s := range streams {
		tok := requestToken(t, keys, s)
		if tok.claims.SessionID != sessionID {
			t.Errorf("stream request %d: token for session %q", i, tok.claims.SessionID)
		}
		if left := tok.claims.ExpiresAt.Sub(s.Sent); left < 15*time.Second {
			t.Errorf("stream request %d went out with a token %s from its expiry; the page renews 30 s ahead", i, left)
		}
		if s.Status != 0 && s.Status != http.StatusOK || s.Failure != "" {
			t.Errorf("stream request %d: status %d %s, want 200", i, s.Status, s.Failure)
		}
	}
	for i, tr := range netlog.list("/api/webhook/dev-token") {
		if tr.Status != http.StatusOK || tr.Failure != "" {
			t.Errorf("token request %d: status %d %s, want 200", i, tr.Status, tr.Failure)
		}
	}
	// The relay opened the session's streams with those tokens, and every
	// reconnect resumed.
	if opened, resumed := streamOpenedLog(t, srv, sessionID); opened < 3 || resumed != opened-1 {
		t.Errorf("the relay's log shows %d streams opened for the session, %d resumed; want at least 3, all but the first resumed\n%s", opened, resumed, srv.Log.String())
	}
	if errs := console.list(); len(errs) != 0 {
		t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
	}
	phase("token checks done")

	t.Run("stream origin not allowed", func(t *testing.T) {
		tab, cancel := chromedp.NewContext(ctx)
		defer cancel()
		console := recordConsole(t, tab)
		netlog := recordNetwork(t, tab)
		defer explainFailure(t, netlog, console)
		if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/?stream="+url.QueryEscape(targetOrigin))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, tab) == "live" })
		notice := eval[[]any](t, tab, `[document.getElementById("notice").hidden, document.getElementById("notice").textContent]`)
		if notice[0] != false || !strings.Contains(notice[1].(string), "Ignored ?stream="+targetOrigin) {
			t.Errorf("notice hidden=%v %q; want it shown, naming %s", notice[0], notice[1], targetOrigin)
		}
		sid := eval[string](t, tab, `document.getElementById("session-id").textContent`)
		streams := netlog.list("/api/webhook/stream")
		if len(streams) == 0 {
			t.Fatal("no stream request")
		}
		for _, s := range streams {
			if "http://"+s.URL.Host != srv.URL {
				t.Errorf("stream request to %s, want the page's own origin %s", s.URL.Host, srv.URL)
			}
			if tok := requestToken(t, keys, s); tok.claims.SessionID != sid {
				t.Errorf("stream token for %q, want the tab's session %q", tok.claims.SessionID, sid)
			}
		}
		id := mustPost(t, srv.Base, map[string]string{"message": "to the page's own relay", "sessionId": sid}, nil)
		waitBubbles(t, tab, id)
		if opened, _ := streamOpenedLog(t, target, sid); opened != 0 {
			t.Errorf("the relay the page was not allowed to use opened %d streams for it", opened)
		}
		if errs := console.list(); len(errs) != 0 {
			t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
		}
	})
	phase("?stream= not allowed: checked")

	t.Run("stream origin in PAGE_STREAM_ORIGINS", func(t *testing.T) {
		tab, cancel := chromedp.NewContext(ctx)
		defer cancel()
		console := recordConsole(t, tab)
		netlog := recordNetwork(t, tab)
		defer explainFailure(t, netlog, console)
		if err := chromedp.Do(tab, chromedp.Navigate(allowing.URL+"/?stream="+url.QueryEscape(targetOrigin))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, `#status "live"`, func() bool { return statusOf(t, tab) == "live" })
		shown := eval[[]any](t, tab, `[document.getElementById("notice").hidden, document.getElementById("stream-info").textContent]`)
		if shown[0] != true {
			t.Errorf("a notice is shown for an allowed ?stream=")
		}
		if want := "Stream: " + targetOrigin + "/api/webhook/stream"; shown[1] != want {
			t.Errorf("stream info %q, want %q", shown[1], want)
		}
		sid := eval[string](t, tab, `document.getElementById("session-id").textContent`)
		streams := netlog.list("/api/webhook/stream")
		if len(streams) == 0 {
			t.Fatal("no stream request")
		}
		for _, s := range streams {
			if "http://"+s.URL.Host != targetOrigin {
				t.Errorf("stream request to %s, want %s", s.URL.Host, targetOrigin)
			}
			// The token comes from the page's own relay; the other accepts it
			// (one secret).
			if tok := requestToken(t, keys, s); tok.claims.SessionID != sid {
				t.Errorf("stream token for %q, want the tab's session %q", tok.claims.SessionID, sid)
			}
			if s.Status != http.StatusOK {
				t.Errorf("stream request to %s: status %d, want 200", targetOrigin, s.Status)
			}
		}
		id := mustPost(t, target.Base, map[string]string{"message": "through the allowed relay", "sessionId": sid}, nil)
		got := waitBubbles(t, tab, id)
		if len(got[id]) != 1 {
			t.Errorf("the message is shown %d times, want once", len(got[id]))
		}
		if opened, _ := streamOpenedLog(t, target, sid); opened == 0 {
			t.Errorf("the allowed relay's log shows no stream for the tab's session")
		}
		if errs := console.list(); len(errs) != 0 {
			t.Errorf("console errors:\n  %s", strings.Join(errs, "\n  "))
		}
	})
	phase("?stream= allowed: checked")
}
