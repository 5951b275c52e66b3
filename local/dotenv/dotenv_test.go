package dotenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse(".env.local", `
# comment
WEBHOOK_SECRET=your-secret-key-here
export PORT=3001
QUOTED="a b # not a comment"
SINGLE='x\ny'
TRAILING=value # comment
EMPTY=
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"WEBHOOK_SECRET": "your-secret-key-here", "PORT": "3001", "QUOTED": "a b # not a comment",
		"SINGLE": `x\ny`, "TRAILING": "value", "EMPTY": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestParseByteOrderMarkAndCRLF(t *testing.T) {
	tests := []struct{ name, content string }{
		{"BOM", "\ufeffWEBHOOK_SECRET=s\nPORT=3001\n"},
		{"BOM and CRLF", "\ufeffWEBHOOK_SECRET=s\r\nPORT=3001\r\n"},
		{"BOM before a comment", "\ufeff# local settings\nWEBHOOK_SECRET=s\nPORT=3001\n"},
		{"BOM before export", "\ufeffexport WEBHOOK_SECRET=s\nPORT=3001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(".env.local", tt.content)
			if err != nil {
				t.Fatal(err)
			}
			if got["WEBHOOK_SECRET"] != "s" || got["PORT"] != "3001" || len(got) != 2 {
				t.Fatalf("got %q, want WEBHOOK_SECRET=s PORT=3001", got)
			}
		})
	}
	// Only a leading mark is one; elsewhere it is part of the text.
	if _, err := Parse(".env", "A=1\n\ufeffB=2\n"); err == nil {
		t.Errorf("a byte-order mark on line 2 was taken as part of no key")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ content, where string }{
		{"OK=1\nnot an assignment\n", ".env:2"},
		{"1BAD=x", ".env:1"},
		{"A=\"unterminated", ".env:1"},
		{"A='x' trailing", ".env:1"},
	}
	for _, tt := range tests {
		_, err := Parse(".env", tt.content)
		if err == nil || !strings.HasPrefix(err.Error(), tt.where) {
			t.Errorf("Parse(%q) error = %v, want it to start with %q", tt.content, err, tt.where)
		}
	}
}

func TestGetenvPrecedence(t *testing.T) {
	dir := t.TempDir()
	local, env := filepath.Join(dir, ".env.local"), filepath.Join(dir, ".env")
	os.WriteFile(local, []byte("A=local\nB=local\n"), 0o600)
	os.WriteFile(env, []byte("A=env\nB=env\nC=env\n"), 0o600)
	real := map[string]string{"B": "real"}
	get, loaded, err := Getenv(func(k string) (string, bool) { v, ok := real[k]; return v, ok }, local, env, filepath.Join(dir, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if get("A") != "local" || get("B") != "real" || get("C") != "env" || len(loaded) != 2 {
		t.Fatalf("A=%q B=%q C=%q loaded=%v", get("A"), get("B"), get("C"), loaded)
	}
}
