package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fakeCentrifugo speaks the part of Centrifugo's protocol the generator
// uses (HTTP publish API with an API key; uni_sse with a connection JWT whose
// channels claim subscribes the stream), so that the Centrifugo wire and the
// checks on it are tested without the binary.
type fakeCentrifugo struct {
	secret, apiKey string
	misroute       bool // every stream gets every channel's publications

	mu   sync.Mutex
	subs map[chan []byte][]string // a stream's frames, and its channels
}

func newFakeCentrifugo() *fakeCentrifugo {
	return &fakeCentrifugo{secret: "test-secret", apiKey: "test-key", subs: map[chan []byte][]string{}}
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		_, _ = io.WriteString(w, "{}")
	case "/api/publish":
		f.publish(w, r)
	case "/connection/uni_sse":
		f.stream(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeCentrifugo) publish(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-API-Key") != f.apiKey {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var in struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Channel == "" || len(in.Data) == 0 {
		_, _ = io.WriteString(w, `{"error":{"code":107,"message":"bad request"}}`)
		return
	}
	push, _ := json.Marshal(map[string]any{"channel": in.Channel, "pub": map[string]any{"data": in.Data, "offset": 1}})
	f.mu.Lock()
	for ch, channels := range f.subs {
		if f.misroute || slices.Contains(channels, in.Channel) {
			select {
			case ch <- push:
			default: // a full queue drops, which the generator counts as lost
			}
		}
	}
	f.mu.Unlock()
	_, _ = io.WriteString(w, `{"result":{}}`)
}

func (f *fakeCentrifugo) stream(w http.ResponseWriter, r *http.Request) {
	var connect struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.URL.Query().Get("cf_connect")), &connect); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var claims struct {
		Channels []string `json:"channels"`
		jwt.RegisteredClaims
	}
	_, err := jwt.ParseWithClaims(connect.Token, &claims, func(*jwt.Token) (any, error) { return []byte(f.secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ch := make(chan []byte, 4096)
	f.mu.Lock()
	f.subs[ch] = claims.Channels
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = io.WriteString(w, "\r\ndata: {\"connect\":{\"client\":\"c1\",\"version\":\"test\",\"subs\":{},\"ping\":25}}\n\n")
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case push := <-ch:
			_, _ = io.WriteString(w, "data: "+string(push)+"\n\n")
			_ = rc.Flush()
		}
	}
}

func (f *fakeCentrifugo) wire() *centrifugoWire {
	return &centrifugoWire{secret: []byte(f.secret), apiKey: f.apiKey}
}

func TestCentrifugoWireRuns(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*fakeCentrifugo, *centrifugoWire)
		check func(*testing.T, *result)
	}{
		{"clean", func(*fakeCentrifugo, *centrifugoWire) {}, func(t *testing.T, r *result) {
			d := r.Delivery
			if !r.OK || d.Lost != 0 || d.Duplicated != 0 || d.Misrouted != 0 || d.Corrupt != 0 || d.Delivered == 0 {
				t.Errorf("want a clean run, got problems %v, delivery %+v", r.Problems, d)
			}
			if r.Connect.OK != 24 || r.Publish.OK == 0 || r.Publish.Failed != 0 {
				t.Errorf("connected %d, published %d ok / %d failed", r.Connect.OK, r.Publish.OK, r.Publish.Failed)
			}
		}},
		{"misroutes", func(f *fakeCentrifugo, _ *centrifugoWire) { f.misroute = true }, func(t *testing.T, r *result) {
			if r.OK || r.Delivery.Misrouted == 0 {
				t.Errorf("misrouting not caught: ok %v, delivery %+v", r.OK, r.Delivery)
			}
		}},
		{"wrong API key", func(_ *fakeCentrifugo, w *centrifugoWire) { w.apiKey = "other" }, func(t *testing.T, r *result) {
			if r.OK || r.Publish.OK != 0 || r.Publish.Failures["401"] == 0 {
				t.Errorf("refused publishes not caught: ok %v, publish %+v", r.OK, r.Publish)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeCentrifugo()
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			w := f.wire()
			c.setup(f, w)
			cfg := smallLoad(srv.URL)
			cfg.wire = w
			cfg.Duration, cfg.Drain = 700*time.Millisecond, 1500*time.Millisecond
			res, err := runLoad(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, res)
		})
	}
}

// A token signed with another key is refused: the stream never connects.
func TestCentrifugoWireTokenIsChecked(t *testing.T) {
	f := newFakeCentrifugo()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	w := f.wire()
	w.secret = []byte("another-secret")
	cfg := smallLoad(srv.URL)
	cfg.wire, cfg.Duration = w, 300*time.Millisecond
	res, err := runLoad(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Connect.OK != 0 || res.Connect.Failed != 24 {
		t.Fatalf("want every stream refused, got ok %v, connect %+v", res.OK, res.Connect)
	}
}

func TestCentrifugoParse(t *testing.T) {
	var w centrifugoWire
	cases := []struct {
		data    string
		kind    eventKind
		text    string
		session string
		isNull  bool
		corrupt bool
	}{
		{`{"connect":{"client":"c","version":"6.9.1","subs":{"broadcast":{}},"ping":25}}`, evConnected, "", "", false, false},
		{`{}`, evOther, "", "", false, false},
		{`{"disconnect":{"code":3001,"reason":"shutdown"}}`, evOther, "", "", false, false},
		{`{"channel":"broadcast","pub":{"data":{"message":"lg:x","sessionId":null},"offset":3}}`, evMessage, "lg:x", "", true, false},
		{`{"channel":"lg-r-3","pub":{"data":{"message":"lg:y","sessionId":"lg-r-3"}}}`, evMessage, "lg:y", "lg-r-3", false, false},
		// The order of fields is not relied on.
		{`{"pub":{"data":{"sessionId":null,"message":"lg:z"}},"channel":"broadcast"}`, evMessage, "lg:z", "", true, false},
		// An escape takes the decoder.
		{`{"channel":"s","pub":{"data":{"message":"a\"b"}}}`, evMessage, `a"b`, "s", false, false},
		{`{"channel":"s","pub":{"data":{"message":"a\"b"`, evMessage, "", "", false, true},
	}
	for _, c := range cases {
		ev := w.parse([]byte(c.data))
		if ev.kind != c.kind || ev.corrupt != c.corrupt || string(ev.text) != c.text || string(ev.session) != c.session || ev.isNull != c.isNull {
			t.Errorf("%s: got %+v (text %q, session %q)", c.data, ev, ev.text, ev.session)
		}
	}
}

func TestCentrifugoToken(t *testing.T) {
	w := &centrifugoWire{secret: []byte("k")}
	for _, c := range []struct {
		session string
		want    []string
	}{
		{"", []string{"broadcast"}},
		{"lg-r-1", []string{"broadcast", "lg-r-1"}},
	} {
		tok, err := w.token(7, c.session)
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			Channels []string `json:"channels"`
			jwt.RegisteredClaims
		}
		if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte("k"), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(claims.Channels, c.want) || claims.Subject != "lg-7" {
			t.Errorf("session %q: channels %v, sub %q; want %v, lg-7", c.session, claims.Channels, claims.Subject, c.want)
		}
		if left := time.Until(claims.ExpiresAt.Time); left < time.Hour {
			t.Errorf("token expires in %s: a long run would be cut", left)
		}
	}
}

// The real server, when infra/centrifugo.sh has installed it into the tool
// cache: the generated configuration starts, and a small run is clean.
func TestRealCentrifugo(t *testing.T) {
	bin := os.Getenv("LOADGEN_CENTRIFUGO")
	if bin == "" {
		out, err := exec.Command("bash", filepath.Join("..", "..", "infra", "centrifugo.sh"), "path").Output()
		if err != nil {
			t.Skipf("no Centrifugo path: %v", err)
		}
		bin = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		t.Skipf("Centrifugo is not installed at %s (bash infra/centrifugo.sh install)", bin)
	}
	cfg := smallLoad("")
	cfg.Centrifugo, cfg.ServerPID = bin, 0
	cfg.Duration = 700 * time.Millisecond
	res, err := runLoad(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Kind != "centrifugo" || res.Delivery.Delivered == 0 || res.Server.RSSAfterMB <= 0 {
		t.Fatalf("Centrifugo run: ok=%v problems=%v kind=%s delivery=%+v server=%+v", res.OK, res.Problems, res.Kind, res.Delivery, res.Server)
	}
}
