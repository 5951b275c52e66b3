// Package chatpage serves the chat window: one self-contained HTML page
// (inline CSS and JS, no external resources) that opens an EventSource on
// /api/webhook/stream for a per-tab session id and shows webhook messages as
// they arrive.
//
// The page is embedded in the binary. Its Content-Security-Policy allows the
// inline script and style by their SHA-256 hashes, computed once from the
// embedded page, so no 'unsafe-inline' is needed.
//
// Routing is the caller's job: the handler answers every path it is given
// with the page (GET, HEAD) or a JSON 405 (other methods). Mount it on "/"
// and "/index.html" only.
package chatpage

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
)

//go:embed index.html
var indexHTML []byte

// The placeholders on <body> that Options fills in; the page treats an empty
// value as "not configured".
const (
	streamAttr  = `data-stream-url=""`
	apiAttr     = `data-api-url=""`
	originsAttr = `data-stream-origins=""`
	tokenAttr   = `data-token-url=""`
)

var (
	scriptRE = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	styleRE  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

// Options configures NewHandler. The zero value is what Handler uses.
type Options struct {
	// StreamURL is where the page opens its EventSource when the page URL has
	// no ?stream= override: an absolute http(s) URL, either a base (origin
	// with optional path prefix, e.g. a Lambda function URL) to which
	// /api/webhook/stream is appended, or the full stream endpoint. When set,
	// this URL's origin joins the CSP connect-src. Empty: the stream is next
	// to the page.
	StreamURL string
	// StreamOrigins are further origins a ?stream= override may name
	// (PAGE_STREAM_ORIGINS). The page ignores any other, and the CSP
	// connect-src allows only 'self', StreamURL's origin and these: a crafted
	// link cannot send the tab's session id to another site.
	StreamOrigins []string
	// TokenURL, when set, is where the page gets a stream token for its
	// session (POST {"sessionId"}) before each connection, renewing it before
	// it expires: stream tokens are on.
	TokenURL string
	// APIURL is the POST /api/webhook target shown in the page's curl
	// command when the page URL has no ?api= override (same base-or-endpoint
	// rules as StreamURL). Empty: next to the page.
	APIURL string
}

type handler struct {
	page []byte
	csp  string
	etag string
}

func mustBuild(o Options) *handler {
	h, err := build(o)
	if err != nil {
		panic("chatpage: " + err.Error())
	}
	return h
}

// Handler returns the handler for the chat page with default Options: the
// stream and the POST endpoint next to the page; ?api= may name another POST
// target for the curl command, ?stream= nothing but the page's own origin.
func Handler() http.Handler { return mustBuild(Options{}) }

// NewHandler returns a chat page handler configured by o. It fails when a
// URL in o is not an absolute http(s) URL.
func NewHandler(o Options) (http.Handler, error) {
	h, err := build(o)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func build(o Options) (*handler, error) {
	page := indexHTML
	connect := []string{"'self'"}
	if o.StreamURL != "" {
		origin, err := httpOrigin(o.StreamURL)
		if err != nil {
			return nil, fmt.Errorf("stream URL: %w", err)
		}
		connect = append(connect, origin)
		page = bytes.Replace(page, []byte(streamAttr),
			[]byte(`data-stream-url="`+html.EscapeString(o.StreamURL)+`"`), 1)
	}
	var allowed []string
	for _, raw := range o.StreamOrigins {
		origin, err := httpOrigin(raw)
		if err != nil {
			return nil, fmt.Errorf("stream origin: %w", err)
		}
		allowed = append(allowed, origin)
	}
	if len(allowed) > 0 {
		connect = append(connect, allowed...)
		page = bytes.Replace(page, []byte(originsAttr),
			[]byte(`data-stream-origins="`+html.EscapeString(strings.Join(allowed, " "))+`"`), 1)
	}
	if o.TokenURL != "" {
		page = bytes.Replace(page, []byte(tokenAttr),
			[]byte(`data-token-url="`+html.EscapeString(o.TokenURL)+`"`), 1)
	}
	if o.APIURL != "" {
		if _, err := httpOrigin(o.APIURL); err != nil {
			return nil, fmt.Errorf("API URL: %w", err)
		}
		page = bytes.Replace(page, []byte(apiAttr),
			[]byte(`data-api-url="`+html.EscapeString(o.APIURL)+`"`), 1)
	}
	csp, err := contentSecurityPolicy(page, strings.Join(slices.Compact(connect), " "))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(page)
	return &handler{
		page: page,
		csp:  csp,
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
	}, nil
}

// httpOrigin returns the scheme://host[:port] of an absolute http(s) URL.
func httpOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if strings.ContainsAny(u.Host, " ;,'\"") {
		return "", fmt.Errorf("%q has an invalid host", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// inlineHash returns the CSP source expression for the single inline block
// that re matches in page.
func inlineHash(page []byte, re *regexp.Regexp, what string) (string, error) {
	m := re.FindAllSubmatch(page, -1)
	if len(m) != 1 {
		return "", fmt.Errorf("page has %d inline %s blocks, want exactly 1", len(m), what)
	}
	sum := sha256.Sum256(m[0][1])
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'", nil
}

func contentSecurityPolicy(page []byte, connect string) (string, error) {
	script, err := inlineHash(page, scriptRE, "<script>")
	if err != nil {
		return "", err
	}
	style, err := inlineHash(page, styleRE, "<style>")
	if err != nil {
		return "", err
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + script,
		"style-src " + style,
		"img-src 'self' data:",
		"connect-src " + connect,
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; "), nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		jsonhttp.MethodNotAllowed(w, "GET, HEAD")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("ETag", h.etag)
	// ServeContent answers HEAD without a body, If-None-Match with 304 and
	// sets Content-Length.
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.page))
}

// WithPage serves the page (Handler's, the stream next to it) at / and
// /index.html, and every other path with next: the webhook function behind
// a REST API, where the whole relay is on one origin.
func WithPage(next http.Handler) http.Handler {
	page := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/", "/index.html":
			page.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
