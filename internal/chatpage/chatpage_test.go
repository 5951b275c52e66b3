package chatpage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

func serve(t *testing.T, h http.Handler, method, target string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestServesPage(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		wantBody       bool
	}{
		{http.MethodGet, "/", true},
		{http.MethodGet, "/index.html", true},
		{http.MethodGet, "/?stream=https://abc.lambda-url.eu-west-1.on.aws/", true},
		{http.MethodHead, "/", false},
		{http.MethodHead, "/index.html", false},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			res, body := serve(t, Handler(), tc.method, tc.target, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			for k, want := range map[string]string{
				"Content-Type":           "text/html; charset=utf-8",
				"Cache-Control":          "no-cache",
				"X-Content-Type-Options": "nosniff",
				"Content-Length":         strconv.Itoa(len(indexHTML)),
			} {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self';", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("CSP %q allows unsafe-*", csp)
			}
			if tc.wantBody && body != string(indexHTML) {
				t.Errorf("body is not the embedded page (%d bytes, want %d)", len(body), len(indexHTML))
			}
			if !tc.wantBody && body != "" {
				t.Errorf("HEAD body = %d bytes, want none", len(body))
			}
		})
	}
}

func TestConditionalGet(t *testing.T) {
	res, _ := serve(t, Handler(), http.MethodGet, "/", nil)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	res, body := serve(t, Handler(), http.MethodGet, "/", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("revalidation: status %d, %d bytes; want 304, empty", res.StatusCode, len(body))
	}
}

func TestMethodNotAllowed(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			res, body := serve(t, Handler(), method, "/", nil)
			if res.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405", res.StatusCode)
			}
			if got := res.Header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("Allow = %q", got)
			}
			if got := res.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var e struct {
				Success *bool   `json:"success"`
				Error   *string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if e.Success == nil || *e.Success || e.Error == nil || *e.Error == "" {
				t.Errorf("body = %q, want {\"success\":false,\"error\":...}", body)
			}
		})
	}
}

// TestPageContents checks the markup contract that browser tests and users
// rely on.
func TestPageContents(t *testing.T) {
	page := string(indexHTML)
	for _, want := range []string{
		`id="status"`,
		`aria-live="polite"`,
		`id="messages" role="log" aria-live="polite"`,
		`id="session-id"`,
		`id="copy-session"`,
		`id="curl"`,
		`id="copy-curl"`,
		`<label for="input"`,
		`>Your side of the chat, shown in this window only (not sent)</label>`,
		`placeholder="Your side of the chat (local only, not sent)"`,
		`id="input"`,
		`type="submit"`,
		`class="msg webhook"`,
		`class="msg user"`,
		`class="badge"><svg`,
		`</svg>Webhook</span>`,
		`class="text"`,
		`<time>`,
		`crypto.randomUUID()`,
		`"webhookRelaySessionId"`,
		`sessionStorage`,
		`"/api/webhook/stream"`,
		`new EventSource(`,
		`"lastEventId"`,
		`EventSource.CLOSED`,
		`new Set()`,
		`"connecting"`, `"live"`, `"reconnecting"`,
		`No messages yet — send one with the curl command above.`,
		`<h1>webhook-relay</h1>`,
		`@media (prefers-color-scheme: dark)`,
		`overflow-wrap: anywhere`,
		`width: fit-content`,
		`max-width: 75%`,
		`Hello from curl!`,
		streamAttr, apiAttr,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The status pill says live or reconnecting; the static subtitle must
	// not claim "live" while the stream is down.
	if m := regexp.MustCompile(`<p id="subtitle">([^<]*)</p>`).FindStringSubmatch(page); m == nil || strings.Contains(strings.ToLower(m[1]), "live") {
		t.Errorf("subtitle %q: want a <p id=\"subtitle\"> that does not say live", m)
	}
	for _, tc := range []struct {
		name string
		re   string
	}{
		{"innerHTML", `(?i)innerHTML`},
		{"outerHTML", `(?i)outerHTML`},
		{"insertAdjacentHTML", `(?i)insertAdjacentHTML`},
		{"document.write", `document\.write`},
		{"eval", `\beval\s*\(|new Function\s*\(`},
		{"string timers", `setTimeout\(\s*["']`},
		{"style attribute (blocked by the CSP)", `<[^>]*\sstyle\s*=`},
		{"inline event handler (blocked by the CSP)", `<[^>]*\son[a-z]+\s*=`},
		{"javascript: URL", `(?i)javascript:`},
		{"external resource", `(?i)(src|href)\s*=\s*["']?(https?:)?//`},
		{"CSS import or url()", `@import|url\(`},
		{"console.error", `console\.(error|warn)`},
		{"unhashed script", `<script[^>]`},
		{"unhashed style", `<style[^>]`},
	} {
		if loc := regexp.MustCompile(tc.re).FindStringIndex(page); loc != nil {
			t.Errorf("page uses %s: %q", tc.name, page[max(0, loc[0]-30):min(len(page), loc[1]+30)])
		}
	}
}

// checkCSP verifies that every inline <script> and <style> in page is
// allowed by a sha256 source in csp.
func checkCSP(csp, page string) error {
	directives := map[string][]string{}
	for _, d := range strings.Split(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			directives[f[0]] = f[1:]
		}
	}
	for _, c := range []struct{ directive, tag string }{
		{"script-src", "script"},
		{"style-src", "style"},
	} {
		blocks := regexp.MustCompile(`(?s)<`+c.tag+`[^>]*>(.*?)</`+c.tag+`>`).FindAllStringSubmatch(page, -1)
		if len(blocks) == 0 {
			return fmt.Errorf("no <%s> in page", c.tag)
		}
		for _, b := range blocks {
			sum := sha256.Sum256([]byte(b[1]))
			want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			found := false
			for _, src := range directives[c.directive] {
				if src == want {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s %q does not allow <%s> with hash %s", c.directive, directives[c.directive], c.tag, want)
			}
		}
	}
	return nil
}

func TestCSPHashesMatchInlineBlocks(t *testing.T) {
	res, body := serve(t, Handler(), http.MethodGet, "/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	if err := checkCSP(csp, body); err != nil {
		t.Fatal(err)
	}
	// The check must be able to fail: a one-byte change to either block, or
	// a second block, breaks it.
	for name, tampered := range map[string]string{
		"script changed": strings.Replace(body, `"use strict";`, `"use strict"; `, 1),
		"style changed":  strings.Replace(body, "--bg: #f4f4f7;", "--bg: #f4f4f8;", 1),
		"extra script":   strings.Replace(body, "</body>", "<script>alert(1)</script></body>", 1),
	} {
		if tampered == body {
			t.Fatalf("%s: tampering did not change the page", name)
		}
		if err := checkCSP(csp, tampered); err == nil {
			t.Errorf("%s: checkCSP accepted a page whose inline blocks do not match the CSP", name)
		}
	}
}

func TestInlineHashRejectsSeveralBlocks(t *testing.T) {
	page := []byte("<style>a{}</style><script>1</script><script>2</script>")
	if _, err := contentSecurityPolicy(page, "*"); err == nil {
		t.Fatal("two <script> blocks accepted")
	}
}

func TestNewHandler(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        Options
		wantErr     bool
		wantConnect string
		wantInBody  []string
	}{
		{name: "zero", opts: Options{}, wantConnect: "connect-src 'self';", wantInBody: []string{streamAttr, apiAttr, originsAttr, tokenAttr}},
		{
			name:        "allowed stream origins and tokens",
			opts:        Options{StreamOrigins: []string{"https://a.example.com", "http://127.0.0.1:9000/"}, TokenURL: DevTokenPath},
			wantConnect: "connect-src 'self' https://a.example.com http://127.0.0.1:9000;",
			wantInBody:  []string{`data-stream-origins="https://a.example.com http://127.0.0.1:9000"`, `data-token-url="` + DevTokenPath + `"`},
		},
		{name: "bad stream origin", opts: Options{StreamOrigins: []string{"example.com"}}, wantErr: true},
		{
			name:        "function URL",
			opts:        Options{StreamURL: "https://abc123.lambda-url.eu-west-1.on.aws/"},
			wantConnect: "connect-src 'self' https://abc123.lambda-url.eu-west-1.on.aws;",
			wantInBody:  []string{`data-stream-url="https://abc123.lambda-url.eu-west-1.on.aws/"`, apiAttr},
		},
		{
			name:        "escaped and api",
			opts:        Options{StreamURL: `http://127.0.0.1:8081/x?a=1&b="2"`, APIURL: "https://api.example.com/Prod"},
			wantConnect: "connect-src 'self' http://127.0.0.1:8081;",
			wantInBody:  []string{`data-stream-url="http://127.0.0.1:8081/x?a=1&amp;b=&#34;2&#34;"`, `data-api-url="https://api.example.com/Prod"`},
		},
		{name: "relative stream", opts: Options{StreamURL: "/api/webhook/stream"}, wantErr: true},
		{name: "ftp stream", opts: Options{StreamURL: "ftp://example.com/"}, wantErr: true},
		{name: "bad api", opts: Options{APIURL: "javascript:alert(1)"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHandler(tc.opts)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res, body := serve(t, h, http.MethodGet, "/", nil)
			csp := res.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp+";", tc.wantConnect) {
				t.Errorf("CSP %q lacks %q", csp, tc.wantConnect)
			}
			if err := checkCSP(csp, body); err != nil {
				t.Error(err)
			}
			for _, want := range tc.wantInBody {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q", want)
				}
			}
		})
	}
}

// TestBubbleColours checks that the webhook bubble is a solid colour with
// text contrast of at least 4.5:1 in both colour schemes, and that the two
// schemes use different purples.
func TestBubbleColours(t *testing.T) {
	page := string(indexHTML)
	dark := strings.Index(page, "@media (prefers-color-scheme: dark)")
	if dark < 0 {
		t.Fatal("no dark scheme")
	}
	light := page[:dark]
	darkCSS := page[dark:]
	varRE := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`--` + name + `:\s*(#[0-9a-fA-F]{6});`)
	}
	get := func(css, name string) string {
		m := varRE(name).FindStringSubmatch(css)
		if m == nil {
			t.Fatalf("--%s is not a solid #rrggbb colour", name)
		}
		return m[1]
	}
	if !regexp.MustCompile(`\.msg\.webhook \{[^}]*background-color: var\(--webhook-bg\);[^}]*color: var\(--webhook-fg\);`).MatchString(page) {
		t.Error(".msg.webhook does not use --webhook-bg / --webhook-fg")
	}
	bgs := map[string]string{}
	for scheme, css := range map[string]string{"light": light, "dark": darkCSS} {
		bg := get(css, "webhook-bg")
		bgs[scheme] = bg
		for _, fg := range []string{"webhook-fg", "webhook-meta"} {
			if r := contrast(get(css, fg), bg); r < 4.5 {
				t.Errorf("%s: --%s on %s contrast %.2f < 4.5", scheme, fg, bg, r)
			}
		}
		if r := contrast(get(css, "badge-fg"), get(css, "badge-bg")); r < 4.5 {
			t.Errorf("%s: badge contrast %.2f < 4.5", scheme, r)
		}
		if r := contrast(get(css, "user-fg"), get(css, "user-bg")); r < 4.5 {
			t.Errorf("%s: user bubble contrast %.2f < 4.5", scheme, r)
		}
		if c := testutil.Hex(bg); !(c.B > c.G && c.R > c.G) {
			t.Errorf("%s: webhook bubble %s is not purple", scheme, bg)
		}
	}
	if strings.EqualFold(bgs["light"], bgs["dark"]) {
		t.Errorf("light and dark bubbles are both %s", bgs["light"])
	}
}

// contrast is the WCAG 2 contrast ratio of two #rrggbb colours.
func contrast(a, b string) float64 { return testutil.Contrast(testutil.Hex(a), testutil.Hex(b)) }

// TestWithPage: the page at its two paths, everything else to the next
// handler (the webhook function's ingest, behind a REST API).
func TestWithPage(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"next":true}`)
	})
	h := WithPage(next)
	for _, tc := range []struct {
		method, target string
		page           bool
	}{
		{http.MethodGet, "/", true},
		{http.MethodHead, "/", true},
		{http.MethodGet, "/index.html", true},
		{http.MethodGet, "/?sessionId=x", true},
		{http.MethodGet, "/api/webhook", false},
		{http.MethodPost, "/api/webhook", false},
		{http.MethodGet, "/index.htm", false},
		{http.MethodGet, "/api/webhook/stream", false},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			res, body := serve(t, h, tc.method, tc.target, nil)
			isPage := strings.HasPrefix(res.Header.Get("Content-Type"), "text/html")
			if isPage != tc.page {
				t.Fatalf("%s %s: Content-Type %q, body %.40q; want the page: %v", tc.method, tc.target, res.Header.Get("Content-Type"), body, tc.page)
			}
			if !tc.page && body != `{"next":true}` {
				t.Errorf("body %q, want the next handler's", body)
			}
		})
	}
}
