package logkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestSession(t *testing.T) {
	tests := []struct {
		name, key, session, want string
	}{
		// Computed with: printf %s "$SESSION_ID" | openssl dgst -sha256 -hmac "$LOG_SESSION_KEY"
		{"keyed", "k3y", "abc-123", "83bc428c0ba6"},
		{"empty key still hashes", "", "abc-123", "d16e13966b80"},
		{"broadcast", "k3y", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Session(tt.key, tt.session)
			if got != tt.want {
				t.Fatalf("Session(%q, %q) = %q, want %q", tt.key, tt.session, got, tt.want)
			}
			if tt.session != "" {
				mac := hmac.New(sha256.New, []byte(tt.key))
				mac.Write([]byte(tt.session))
				if full := hex.EncodeToString(mac.Sum(nil)); len(got) != Len || !strings.HasPrefix(full, got) {
					t.Fatalf("Session = %q, want the first %d hex of %s", got, Len, full)
				}
			}
		})
	}
	if Session("a", "s") == Session("b", "s") {
		t.Fatal("the key does not change the hash")
	}
}

// TestREADMECommand runs the README's correlation command as printed: an
// operator must get the value the log carries.
func TestREADMECommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmdline string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, `openssl dgst -sha256 -hmac "$LOG_SESSION_KEY"`) {
			cmdline = strings.TrimSpace(line)
			break
		}
	}
	if cmdline == "" {
		t.Fatal(`README.md has no line with the command: openssl dgst -sha256 -hmac "$LOG_SESSION_KEY"`)
	}
	cmdline = strings.Trim(cmdline, "`")
	if _, err := exec.LookPath("openssl"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("CI=true: openssl is not available")
		}
		t.Skip("SKIPPED: openssl is not available")
	}
	for _, key := range []string{"", "k3y", "with space and 'quote'"} {
		cmd := exec.Command("sh", "-c", cmdline)
		cmd.Env = append(os.Environ(), "SESSION_ID=user-42.chat:x", "LOG_SESSION_KEY="+key)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", cmdline, err)
		}
		if got, want := strings.TrimSpace(string(out)), Session(key, "user-42.chat:x"); got != want {
			t.Fatalf("key %q: README command prints %q, the log carries %q", key, got, want)
		}
	}
}
