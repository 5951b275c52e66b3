package chatpage

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// DevTokenPath is where the local adapter's page gets its stream tokens.
const DevTokenPath = "/api/webhook/dev-token"

// DefaultDevTokenTTL is the lifetime of a development token when the
// caller gives none: short, since the page renews it 30 s before each expiry.
const DefaultDevTokenTTL = 10 * time.Minute

// DevTokenHandler mints stream tokens for the chat page of the local
// adapter when stream tokens are on: a token for whatever session the page
// asks, so it must not be reachable by anyone but the developer's own
// browser tab. It answers only requests from a loopback address (the
// adapter binds 127.0.0.1 by default) whose browser says they come from the
// page's own origin (Sec-Fetch-Site: same-origin, or a matching Origin), so
// that another site open in the same browser cannot mint one either. It is
// never mounted on Lambda: there an app backend mints tokens with the
// secret, or calls POST /api/webhook/token. Each token lives ttl
// (DefaultDevTokenTTL when ttl is not positive).
func DevTokenHandler(keys *token.Keys, now func() time.Time, ttl time.Duration) http.Handler {
	if ttl <= 0 {
		ttl = DefaultDevTokenTTL
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			jsonhttp.MethodNotAllowed(w, "POST")
			return
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			jsonhttp.Error(w, http.StatusForbidden, "Development tokens are served to this machine only.")
			return
		}
		// A hostile name that resolves to 127.0.0.1 (DNS rebinding) would pass
		// both checks as "same origin": the page must be addressed by a
		// loopback name itself.
		if !loopbackHost(r.Host) {
			jsonhttp.Error(w, http.StatusForbidden, "Development tokens are served to pages opened as localhost, 127.0.0.1 or [::1] only.")
			return
		}
		site, origin := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin")
		if site != "same-origin" && (origin == "" || origin != "http://"+r.Host) {
			jsonhttp.Error(w, http.StatusForbidden, "Development tokens are served to this page's own origin only.")
			return
		}
		var req struct {
			SessionID string `json:"sessionId"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&req); err != nil {
			jsonhttp.Error(w, http.StatusBadRequest, `Body must be JSON: {"sessionId": string}.`)
			return
		}
		if err := message.ValidateSessionID(req.SessionID); err != nil || req.SessionID == "" {
			jsonhttp.Error(w, http.StatusBadRequest, "Field 'sessionId' must be the page's session id.")
			return
		}
		exp := now().Add(ttl).Truncate(time.Second)
		tok, err := keys.Sign(token.Claims{SessionID: req.SessionID, ExpiresAt: exp})
		if err != nil {
			jsonhttp.Error(w, http.StatusInternalServerError, "Could not sign the token.")
			return
		}
		jsonhttp.Write(w, http.StatusOK, map[string]any{"success": true, "token": tok, "expiresAt": exp.UnixMilli(), "sessionId": req.SessionID})
	})
}

// loopbackHost reports whether a Host header names this machine by a
// loopback name or address.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
