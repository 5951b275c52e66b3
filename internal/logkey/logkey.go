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
	"hash"
	"io"
	"sync"
)

// Len is the number of hex characters Session returns: 48 bits, enough to
// tell a deployment's sessions apart in logs, too few to be worth much as a
// lookup key.
const Len = 12

// Session returns the first Len hex characters of HMAC-SHA256(key,
// sessionID), or "" for the empty session id (a broadcast, nothing to hide).
// An empty key still hashes: the raw id never reaches a log.
func Session(key, sessionID string) string { return NewHasher(key).Session(sessionID) }

// Hasher is Session for one key, set up once: a handler hashes the session
// of every request it logs. It is safe for concurrent use.
type Hasher struct{ macs sync.Pool }

// NewHasher returns the Hasher of key.
func NewHasher(key string) *Hasher {
	h := &Hasher{}
	h.macs.New = func() any { return hmac.New(sha256.New, []byte(key)) }
	return h
}

// Session is the package's Session with the Hasher's key.
func (h *Hasher) Session(sessionID string) string {
	if sessionID == "" {
		return ""
	}
	mac := h.macs.Get().(hash.Hash)
	mac.Reset()
	_, _ = io.WriteString(mac, sessionID)
	var sum [sha256.Size]byte
	b := mac.Sum(sum[:0])
	h.macs.Put(mac)
	var out [Len]byte
	hex.Encode(out[:], b[:Len/2])
	return string(out[:])
}
