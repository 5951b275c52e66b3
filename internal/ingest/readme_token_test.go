package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/testutil"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// TestREADMETokenExamples runs the stream token examples of README.md as
// printed: the curl call of POST /api/webhook/token, and the Node.js and
// Python functions with which an app backend mints the same token. Each
// token must verify with the relay's own keys and grant what the example
// asks. (The page's snippet is fenced js: it needs a browser, and it is no
// sender example for TestREADMEExamplesRunAsPrinted.)
func TestREADMETokenExamples(t *testing.T) {
	var curl, node, python []readmeBlock
	for _, b := range readmeBlocks(t) {
		switch {
		case b.lang == "sh" && strings.Contains(b.code, TokenPath):
			curl = append(curl, b)
		case b.lang == "javascript" && strings.Contains(b.code, "from 'jsonwebtoken'"):
			node = append(node, b)
		case b.lang == "python" && strings.Contains(b.code, "import jwt"):
			python = append(python, b)
		}
	}
	if len(curl) != 1 || len(node) != 1 || len(python) != 1 {
		t.Fatalf("README.md has %d curl examples of %s, %d Node.js (jsonwebtoken) and %d Python (PyJWT) token examples; want one each",
			len(curl), TokenPath, len(node), len(python))
	}
	// A rotation list: the backends must sign with the first secret.
	const newSecret, oldSecret = "the-new-stream-token-secret-of-32+-bytes", "the-old-stream-token-secret-of-32+-bytes"
	signedWithNew, err := token.NewKeys([][]byte{[]byte(newSecret)})
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "STREAM_TOKEN_SECRET="+newSecret+","+oldSecret,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
		"HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=", "ALL_PROXY=", "all_proxy=")
	run := func(t *testing.T, dir string, argv ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("%s failed: %v\n%s%s", strings.Join(argv, " "), err, out, stderr)
		}
		return out
	}
	// check verifies a printed {"token", "expiresAt"} and returns its claims.
	check := func(t *testing.T, out []byte, wantSID string, ttl time.Duration) {
		t.Helper()
		var got struct {
			Token     string `json:"token"`
			ExpiresAt int64  `json:"expiresAt"`
			SessionID string `json:"sessionId"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("printed %q, want JSON with token and expiresAt", out)
		}
		now := time.Now()
		c, err := signedWithNew.Verify(got.Token, now)
		if err != nil {
			t.Fatalf("the token does not verify with the first secret: %v", err)
		}
		if c.SessionID != wantSID {
			t.Errorf("the token is for session %q, want %q", c.SessionID, wantSID)
		}
		if left := c.ExpiresAt.Sub(now); left > ttl || left < ttl-5*time.Second {
			t.Errorf("the token expires in %s, want %s", left, ttl)
		}
		if got.ExpiresAt != c.ExpiresAt.UnixMilli() {
			t.Errorf("printed expiresAt %d, the token's exp is %d ms", got.ExpiresAt, c.ExpiresAt.UnixMilli())
		}
	}
	const sid = "readme-session-7"

	t.Run("curl", func(t *testing.T) {
		testutil.LookPath(t, "curl", "--version")
		cfg := testConfig()
		cfg.WebhookSecrets = []string{"your-secret-key-here"}
		cfg.StreamTokenSecrets = [][]byte{[]byte(newSecret), []byte(oldSecret)}
		h, _, _ := newTestHandler(t, cfg, time.Now)
		srv := httptest.NewServer(h)
		defer srv.Close()
		code := strings.ReplaceAll(curl[0].code, "http://localhost:3000", srv.URL)
		if code == curl[0].code {
			t.Fatalf("example does not target http://localhost:3000:\n%s", curl[0].code)
		}
		out := run(t, t.TempDir(), "sh", "-c", code)
		if !strings.Contains(string(out), `"success":true`) {
			t.Fatalf("printed %q, want the answer with success true", out)
		}
		check(t, out, "0b9e4c1a-7f5d-4e2a-9c3b-1d2e3f4a5b6c", 600*time.Second)
	})

	t.Run("node", func(t *testing.T) {
		testutil.LookPath(t, "node", "--version")
		dir := t.TempDir()
		if err := os.Symlink(readmeNodeModules(t), filepath.Join(dir, "node_modules")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "mint.mjs"), []byte(node[0].code), 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, run(t, dir, "node", "mint.mjs", sid), sid, 600*time.Second)
	})

	t.Run("python", func(t *testing.T) {
		// PyJWT from pip, or Debian's python3-jwt for the system python
		// (infra/deps.sh installs that one).
		interp := ""
		for _, p := range []string{"python3", "/usr/bin/python3"} {
			if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import jwt").Run() == nil {
				interp = path
				break
			}
		}
		if interp == "" {
			testutil.Unavailable(t, "no python3 with PyJWT (pip install PyJWT, or apt-get install python3-jwt)")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mint.py"), []byte(python[0].code), 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, run(t, dir, interp, "mint.py", sid), sid, 600*time.Second)
	})
}

// readmeNodeModules returns a node_modules directory with the pinned
// jsonwebtoken of testdata/readme-node (package.json and its lock), which it
// installs with npm ci into the tool cache on first use, as
// infra/dynamodb-local.sh does DynamoDB Local. Concurrent test processes
// each install into a directory of their own and rename it into place.
func readmeNodeModules(t *testing.T) string {
	t.Helper()
	pkg, err := os.ReadFile("testdata/readme-node/package.json")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile("testdata/readme-node/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	root, err := testutil.CacheRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "readme-node-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(dir, "node_modules")
	installed := func() bool {
		_, err := os.Stat(filepath.Join(modules, "jsonwebtoken", "package.json"))
		return err == nil
	}
	if installed() {
		return modules
	}
	testutil.LookPath(t, "npm", "--version")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, ".readme-node-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.Unavailable(t, "npm ci of %s (jsonwebtoken for the README's Node.js example) failed: %v\n%s", "internal/ingest/testdata/readme-node", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !installed() {
		t.Fatalf("install jsonwebtoken into %s: %v", dir, err)
	}
	return modules
}
