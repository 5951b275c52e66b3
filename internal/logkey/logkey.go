// Package logkey turns a session id into what a log line may carry: a short
// keyed hash. While a session id is all a browser needs to listen to a
// session, the raw id in a log is a credential; the hash still lets an
// operator who holds LOG_SESSION_KEY find a given session's lines:
//
//	printf %s "$SESSION_ID" | openssl dgst -sha256 -hmac "$LOG_SESSION_KEY" | cut -d' ' -f2 | cut -c1-12
package logkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Len is the number of hex characters Session returns: 48 bits, enough to
// tell a deployment's sessions apart in logs, too few to be worth much as a
// lookup key.
const Len = 12

// Session returns the first Len hex characters of HMAC-SHA256(key,
// sessionID), or "" for the empty session id (a broadcast, nothing to hide).
// An empty key still hashes: the raw id never reaches a log.
func Session(key, sessionID string) string {
	if sessionID == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(sessionID))
	return hex.EncodeToString(mac.Sum(nil))[:Len]
}
