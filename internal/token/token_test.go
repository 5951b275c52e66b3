package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210")
)

// raw builds a token by hand, so tests can make every kind of bad one.
func raw(t *testing.T, header, payload string, secret []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	keys, err := NewKeys([][]byte{secretA, secretB})
	if err != nil {
		t.Fatal(err)
	}
	onlyB, _ := NewKeys([][]byte{secretB})
	good, _ := keys.Sign(Claims{SessionID: "abc", ExpiresAt: now.Add(time.Hour)})
	signedByB, _ := onlyB.Sign(Claims{ExpiresAt: now.Add(time.Hour)})
	hs := `{"alg":"HS256","typ":"JWT"}`
	tests := []struct {
		name, tok, reason, sid string
	}{
		{"signed with the first secret", good, "", "abc"},
		{"signed with a second (rotated-in) secret", signedByB, "", ""},
		{"expired", raw(t, hs, `{"exp":1799999000}`, secretA), "expired", ""},
		{"expired a moment ago: no leeway on exp", raw(t, hs, `{"exp":1799999990,"sid":"s"}`, secretA), "expired", ""},
		{"nbf a moment ahead: within the leeway", raw(t, hs, `{"exp":1800009999,"nbf":1800000010,"sid":"s"}`, secretA), "", "s"},
		{"not yet valid", raw(t, hs, `{"exp":1800009999,"nbf":1800000100}`, secretA), "not valid yet", ""},
		{"no exp", raw(t, hs, `{"sid":"s"}`, secretA), "no expiry", ""},
		{"bad signature", raw(t, hs, `{"exp":1800009999}`, []byte("another secret another secret !!")), "signature", ""},
		{"alg none", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":1800009999}`)) + ".", "HS256", ""},
		{"alg HS512", raw(t, `{"alg":"HS512","typ":"JWT"}`, `{"exp":1800009999}`, secretA), "HS256", ""},
		{"malformed", "not.a.jwt", "malformed", ""},
		{"empty", "", "malformed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keys.Verify(tt.tok, now)
			if tt.reason == "" {
				if err != nil || c.SessionID != tt.sid {
					t.Fatalf("Verify = %+v, %v; want sid %q", c, err, tt.sid)
				}
				return
			}
			var te *Error
			if err == nil || !strings.Contains(err.Error(), tt.reason) || !errorAs(err, &te) {
				t.Fatalf("Verify error = %v; want one saying %q", err, tt.reason)
			}
		})
	}
}

func errorAs(err error, te **Error) bool {
	e, ok := err.(*Error)
	*te = e
	return ok
}

func TestNewKeysRefusesShortSecrets(t *testing.T) {
	if _, err := NewKeys([][]byte{secretA, []byte("short")}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
	if _, err := NewKeys(nil); err == nil {
		t.Fatal("no secret was accepted")
	}
}

func FuzzVerify(f *testing.F) {
	keys, _ := NewKeys([][]byte{secretA})
	good, _ := keys.Sign(Claims{SessionID: "abc", ExpiresAt: time.Unix(1_800_003_600, 0)})
	for _, s := range []string{good, "", "a.b.c", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := keys.Verify(tok, time.Unix(1_800_000_000, 0))
		if err != nil {
			if _, ok := err.(*Error); !ok || err.Error() == "" {
				t.Fatalf("Verify(%q) error %T %v: want a *Error with a sentence", tok, err, err)
			}
			return
		}
		// Whatever verifies must be one of ours: re-signing gives a token
		// that verifies to the same claims.
		again, err := keys.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		if c2, err := keys.Verify(again, time.Unix(1_800_000_000, 0)); err != nil || c2 != c {
			t.Fatalf("re-signed %+v verifies as %+v, %v", c, c2, err)
		}
	})
}
