package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// signatureTolerance is how far webhook-timestamp may be from our clock, in
// either direction (Standard Webhooks).
const signatureTolerance = 5 * time.Minute

// verifySignature checks Standard Webhooks headers against body. It returns
// "" when valid, else a reason a sender can act on.
func verifySignature(key []byte, h http.Header, body []byte, now time.Time) string {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return "Missing webhook-id, webhook-timestamp or webhook-signature header."
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "Invalid webhook-timestamp: want Unix seconds."
	}
	switch d := now.Sub(time.Unix(sec, 0)); {
	case d > signatureTolerance:
		return "Stale webhook-timestamp: it is more than 5 minutes old (a replayed request, or the sender's clock is behind)."
	case d < -signatureTolerance:
		return "The webhook-timestamp is too far in the future: more than 5 minutes ahead of the current time (the sender's clock is ahead)."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	// Several signatures are allowed, for key rotation; check them all so the
	// time taken does not depend on which one matches.
	for sig := range strings.FieldsSeq(sigs) {
		version, b64, found := strings.Cut(sig, ",")
		if !found || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return "Invalid webhook signature: no v1 signature matches the body with the configured signing secret."
	}
	return ""
}

// Sign returns a webhook-signature value for body: senders and tests use it.
func Sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
