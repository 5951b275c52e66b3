package message

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValidateText(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		max     int
		wantErr string
	}{
		{"plain", "hello", 4000, ""},
		{"empty", "", 4000, "required"},
		{"blank", " \t\n ", 4000, "required"},
		{"invalid utf8", "a\xffb", 4000, "UTF-8"},
		{"exactly max ascii", strings.Repeat("a", 10), 10, ""},
		{"over max ascii", strings.Repeat("a", 11), 10, "too long: 11 characters"},
		{"multibyte exactly max", strings.Repeat("é", 4000), 4000, ""},
		{"emoji exactly max", strings.Repeat("😀", 4000), 4000, ""},
		{"multibyte over max", strings.Repeat("é", 4001), 4000, "too long"},
		{"surrounding space kept", "  hi  ", 4000, ""},
		{"newlines", "a\nb\r\nc", 4000, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateText(tt.text, tt.max)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateText: unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateText error = %v, want containing %q", err, tt.wantErr)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "message" {
				t.Fatalf("error %#v is not a ValidationError about field message", err)
			}
			if want := "Field 'message' " + ve.Reason; err.Error() != want {
				t.Fatalf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestValidateSessionID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"A-Z_a.z:09", true},
		{"3f2b8c1e-9a4d-4c3b-8e2f-1a2b3c4d5e6f", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"has space", false},
		{"a/b", false},
		{"é", false},
		{"a\x00", false},
		{"<script>", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := ValidateSessionID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateSessionID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			var ve *ValidationError
			if err != nil && (!errors.As(err, &ve) || ve.Field != "sessionId" || !strings.HasPrefix(ve.Reason, "must be 1 to 128 characters")) {
				t.Fatalf("ValidateSessionID(%q) = %#v, want a ValidationError about field sessionId", tt.id, err)
			}
		})
	}
}

var idPattern = regexp.MustCompile(`^[0-9]{13}-[a-z0-9]{12}$`)

func TestNewID(t *testing.T) {
	at := time.UnixMilli(1764392542123)
	seen := make(map[string]bool)
	for range 10000 {
		id := NewID(at)
		if !idPattern.MatchString(id) {
			t.Fatalf("NewID = %q, want <13 digits>-<12 lowercase alphanumerics>", id)
		}
		if !strings.HasPrefix(id, "1764392542123-") {
			t.Fatalf("NewID = %q, want the timestamp prefix", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

// TestValidationErrorWithoutField: an error about no single field is its
// reason alone.
func TestValidationErrorWithoutField(t *testing.T) {
	if got := (&ValidationError{Reason: "Request body is empty."}).Error(); got != "Request body is empty." {
		t.Errorf("Error() = %q", got)
	}
}

func FuzzValidate(f *testing.F) {
	const maxChars = 4000 // MAX_MESSAGE_CHARS's default
	for _, s := range []string{"", " ", "hello", "a\xff", strings.Repeat("é", 4001), "ok-session_1:2.3"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, session string) {
		err := ValidateText(text, maxChars)
		valid := utf8.ValidString(text) && strings.TrimSpace(text) != "" && utf8.RuneCountInString(text) <= maxChars
		if (err == nil) != valid {
			t.Fatalf("ValidateText(%q) = %v, want valid=%v", text, err, valid)
		}
		if err := ValidateSessionID(session); err == nil {
			if len(session) == 0 || len(session) > MaxSessionIDLength || !regexp.MustCompile(`^[A-Za-z0-9._:-]+$`).MatchString(session) {
				t.Fatalf("ValidateSessionID accepted %q", session)
			}
		}
	})
}
