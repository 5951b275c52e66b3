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
