package stream_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

// TestBadSessionIDNamesTheQueryParameter: the stream states message's rule
// for a session id about its query parameter, in full.
func TestBadSessionIDNamesTheQueryParameter(t *testing.T) {
	// Refused before the store is touched: none is needed.
	h := stream.New(nil, config.Defaults(), stream.Options{Logger: quiet()})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, stream.Path+"?sessionId=has+space", nil))
	body, _ := io.ReadAll(rec.Body)
	const want = `"error":"Query parameter 'sessionId' must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'."`
	if rec.Code != http.StatusBadRequest || !strings.Contains(string(body), want) {
		t.Errorf("got %d %s, want 400 with %s", rec.Code, body, want)
	}
}
