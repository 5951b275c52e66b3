package ingest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
)

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct{ lang, code string }

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	for _, m := range regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```$").FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, readmeBlock{m[1], m[2]})
	}
	return blocks
}

// TestREADMEExamplesRunAsPrinted runs every sender example of README.md as
// printed, but for the port: curl, Node.js and Python. Each must print the
// answer, and the message must be stored once.
func TestREADMEExamplesRunAsPrinted(t *testing.T) {
	var runnable []readmeBlock
	for _, b := range readmeBlocks(t) {
		switch {
		case b.lang == "sh" && strings.HasPrefix(b.code, "curl -X POST "),
			b.lang == "javascript" && strings.Contains(b.code, "fetch("),
			b.lang == "python" && strings.Contains(b.code, "requests.post("):
			runnable = append(runnable, b)
		}
	}
	if len(runnable) < 5 {
		t.Fatalf("found %d runnable examples in README.md, want at least 5 (curl x3, Node.js, Python)", len(runnable))
	}
	idRE := regexp.MustCompile(`[0-9]{13}-[0-9a-z]+`)
	successRE := regexp.MustCompile(`["']?success["']?\s*:\s*(true|True)`)
	for i, b := range runnable {
		t.Run(strconv.Itoa(i)+"-"+b.lang, func(t *testing.T) {
			cfg := testConfig()
			if strings.Contains(b.code, "your-secret-key-here") {
				cfg.WebhookSecrets = []string{"your-secret-key-here"} // the example must send it right
			}
			h, rec, _ := newTestHandler(t, cfg, time.Now)
			// The first POST is answered 503 without reaching the handler:
			// an example that retries must send the same Idempotency-Key
			// again; one that does not retry prints the 503.
			var mu sync.Mutex
			var keys []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				first := len(keys) == 1
				mu.Unlock()
				if first && b.lang == "javascript" {
					w.Header().Set("Retry-After", "1")
					jsonhttp.Error(w, http.StatusServiceUnavailable, "Try again.")
					return
				}
				h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			code := strings.ReplaceAll(b.code, "http://localhost:3000", srv.URL)
			if code == b.code {
				t.Fatalf("example does not target http://localhost:3000:\n%s", b.code)
			}
			dir := t.TempDir()
			var argv []string
			switch b.lang {
			case "sh":
				testutil.LookPath(t, "curl", "--version")
				argv = []string{"sh", "-c", code}
			case "javascript":
				testutil.LookPath(t, "node", "-e", "if (typeof fetch !== 'function') process.exit(1)")
				if err := os.WriteFile(filepath.Join(dir, "send.mjs"), []byte(code), 0o600); err != nil {
					t.Fatal(err)
				}
				argv = []string{"node", "send.mjs"}
			case "python":
				testutil.LookPath(t, "python3", "-c", "import requests")
				if err := os.WriteFile(filepath.Join(dir, "send.py"), []byte(code), 0o600); err != nil {
					t.Fatal(err)
				}
				argv = []string{"python3", "send.py"}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = dir
			// Never through a proxy: the server is on 127.0.0.1.
			cmd.Env = append(os.Environ(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
				"HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=", "ALL_PROXY=", "all_proxy=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s failed: %v\n%s", argv[0], err, out)
			}
			if !successRE.Match(out) {
				t.Fatalf("printed %q, want the answer with success true", out)
			}
			if rec.count() != 1 || !strings.Contains(string(out), rec.stored[0].ID) || !idRE.MatchString(rec.stored[0].ID) {
				t.Fatalf("printed %q; stored %+v; want one message whose id is printed", out, rec.stored)
			}
			if b.lang == "javascript" && (len(keys) != 2 || keys[0] == "" || keys[0] != keys[1]) {
				t.Fatalf("Idempotency-Key of the first try and the retry: %q; want one key sent twice", keys)
			}
		})
	}
}

// TestREADMEPresenceExample runs the README's presence example as printed,
// but for the port, with WEBHOOK_SECRET set as the example assumes: it must
// print the session's count, and without the secret get nothing.
func TestREADMEPresenceExample(t *testing.T) {
	var example string
	for _, b := range readmeBlocks(t) {
		if b.lang == "sh" && strings.HasPrefix(b.code, "curl ") && strings.Contains(b.code, "/api/webhook?sessionId=") {
			example = b.code
		}
	}
	if example == "" {
		t.Fatal("README.md has no curl example of GET /api/webhook?sessionId=")
	}
	testutil.LookPath(t, "curl", "--version")
	cfg := testConfig()
	cfg.WebhookSecrets = []string{"presence-secret"}
	ms := memstore.New(store.Options{})
	srv := httptest.NewServer(New(ms, cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}))
	defer srv.Close()
	for _, id := range []string{"l1", "l2"} {
		if err := ms.PutLease(t.Context(), store.Lease{ID: id, SessionID: "abc", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ secret, want string }{
		{"presence-secret", `"sessionConnections":2`},
		{"", "Missing X-Webhook-Secret"},
	} {
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(example, "http://localhost:3000", srv.URL))
		cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+tt.secret, "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1", "HTTP_PROXY=", "http_proxy=")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("with WEBHOOK_SECRET=%q printed %q (%v), want %s", tt.secret, out, err, tt.want)
		}
	}
}
