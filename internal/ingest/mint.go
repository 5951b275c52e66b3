package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// TokenPath mints stream tokens for app backends that do not sign their
// own (with STREAM_TOKEN_SECRET set; guarded like POST /api/webhook).
const TokenPath = "/api/webhook/token"

// Token lifetimes: an hour by default, a day at most. A token in a URL
// (?token=) lands in logs and history, so the page should ask for short ones.
const (
	defaultTokenTTL = time.Hour
	maxTokenTTL     = 24 * time.Hour
	maxMintBody     = 4 << 10
)

type minted struct {
	Success   bool    `json:"success"`
	Token     string  `json:"token"`
	ExpiresAt int64   `json:"expiresAt"`
	SessionID *string `json:"sessionId"`
}

func (h *Handler) mint(w http.ResponseWriter, r *http.Request) outcome {
	if h.keys == nil {
		return h.fail(w, http.StatusNotFound, "Stream tokens are not enabled on this relay (STREAM_TOKEN_SECRET is not set).")
	}
	if r.Method != http.MethodPost {
		jsonhttp.MethodNotAllowed(w, "POST")
		return outcome{status: http.StatusMethodNotAllowed, result: "method not allowed"}
	}
	if o, ok := h.authorized(w, r); !ok {
		return o
	}
	var req struct {
		SessionID  *string          `json:"sessionId"`
		TTLSeconds *json.RawMessage `json:"ttlSeconds"`
	}
	body, berr := readBody(w, r, maxMintBody, false)
	if berr != nil {
		return h.fail(w, berr.status, berr.msg)
	}
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		return h.fail(w, http.StatusBadRequest, `Body must be JSON: {"sessionId"?: string, "ttlSeconds"?: number}.`)
	}
	sid := ""
	if req.SessionID != nil && *req.SessionID != "" {
		sid = *req.SessionID
		if err := message.ValidateSessionID(sid); err != nil {
			return h.fail(w, http.StatusBadRequest, err.Error())
		}
	}
	ttl := defaultTokenTTL
	if req.TTLSeconds != nil {
		n, err := strconv.Atoi(string(*req.TTLSeconds))
		if err != nil || n < 1 || time.Duration(n)*time.Second > maxTokenTTL {
			return h.fail(w, http.StatusBadRequest, "Field 'ttlSeconds' must be a whole number from 1 to "+strconv.Itoa(int(maxTokenTTL/time.Second))+".")
		}
		ttl = time.Duration(n) * time.Second
	}
	exp := h.now().Add(ttl).Truncate(time.Second) // a JWT's exp is in whole seconds
	tok, err := h.keys.Sign(token.Claims{SessionID: sid, ExpiresAt: exp})
	if err != nil {
		o := h.fail(w, http.StatusInternalServerError, "Could not sign the token.")
		o.err = err
		return o
	}
	out := minted{Success: true, Token: tok, ExpiresAt: exp.UnixMilli()}
	if sid != "" {
		out.SessionID = &sid
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return outcome{status: http.StatusOK, result: "token minted", sessionID: sid}
}
