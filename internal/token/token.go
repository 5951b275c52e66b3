// Package token signs and verifies stream tokens: compact JWTs signed with
// HS256 and nothing else, carrying exp (required), nbf (optional) and sid
// (optional: the one session the bearer may read; absent, broadcasts only).
// Parsing and signature checks are golang-jwt's, with the algorithm pinned.
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretBytes is the shortest secret accepted: HS256's key should be at
// least as long as its output.
const MinSecretBytes = 32

// Leeway is the clock skew tolerated on nbf, for a token minted by a backend
// whose clock runs a little ahead. None on exp: a stream ends by its token's
// exp, so an expired token would open a stream that ends at once, again and
// again, instead of being told to renew.
const Leeway = 30 * time.Second

// Claims are what a token grants.
type Claims struct {
	SessionID string    // "" for broadcasts only
	ExpiresAt time.Time // the stream ends by then
}

// Keys sign with the first secret and accept any, so that a secret can be
// rotated without a gap: add the new one first, drop the old one after the
// longest token lifetime.
type Keys struct {
	secrets [][]byte
}

// NewKeys returns the keys for secrets, each at least MinSecretBytes long.
func NewKeys(secrets [][]byte) (*Keys, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret")
	}
	for i, s := range secrets {
		if len(s) < MinSecretBytes {
			return nil, fmt.Errorf("secret %d is %d bytes; want at least %d", i+1, len(s), MinSecretBytes)
		}
	}
	return &Keys{secrets: secrets}, nil
}

type wire struct {
	SessionID string `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

// Sign returns a token granting c.
func (k *Keys) Sign(c Claims) (string, error) {
	w := wire{SessionID: c.SessionID, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(c.ExpiresAt)}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, w).SignedString(k.secrets[0])
}

// Error says why a token was refused, in a sentence for the client.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

// Verify checks tok at now and returns what it grants, or an *Error.
func (k *Keys) Verify(tok string, now time.Time) (Claims, error) {
	// The algorithm is pinned; say so rather than "bad signature".
	if t, _, err := jwt.NewParser().ParseUnverified(tok, &wire{}); err == nil && t.Method.Alg() != jwt.SigningMethodHS256.Alg() {
		return Claims{}, &Error{Reason: "The stream token must be signed with HS256."}
	} else if err != nil && errors.Is(err, jwt.ErrTokenUnverifiable) {
		return Claims{}, &Error{Reason: "The stream token must be signed with HS256."}
	}
	var w wire
	keys := jwt.VerificationKeySet{}
	for _, s := range k.secrets {
		keys.Keys = append(keys.Keys, s)
	}
	_, err := jwt.ParseWithClaims(tok, &w, func(*jwt.Token) (any, error) { return keys, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return Claims{}, &Error{Reason: reason(err)}
	}
	if !now.Before(w.ExpiresAt.Time) {
		return Claims{}, &Error{Reason: reason(jwt.ErrTokenExpired)}
	}
	return Claims{SessionID: w.SessionID, ExpiresAt: w.ExpiresAt.Time}, nil
}

func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "The stream token is malformed."
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "The stream token's signature is invalid."
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "The stream token must be signed with HS256."
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "The stream token has no expiry (exp)."
	case errors.Is(err, jwt.ErrTokenExpired):
		return "The stream token has expired."
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "The stream token is not valid yet (nbf)."
	}
	return "The stream token is invalid."
}
