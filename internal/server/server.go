// Package server assembles the whole relay as one http.Handler: the chat
// page, the ingest endpoint and the stream, for the local adapter and for
// tests. The Lambdas serve the same ingest and stream handlers one each.
package server

import (
	"net/http"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/chatpage"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// Store is everything the relay needs of a message store.
type Store interface {
	ingest.Store
	stream.Store
}

// Options pass collaborators through to the handlers.
type Options struct {
	Ingest ingest.Options
	Stream stream.Options
	// DevTokens lets the chat page get its own stream tokens when they are
	// on (chatpage.DevTokenHandler: loopback, same origin): for the local
	// adapter, never for a server others can reach.
	DevTokens bool
	// DevTokenTTL is the lifetime of those tokens; zero means
	// chatpage.DefaultDevTokenTTL (10 minutes).
	DevTokenTTL time.Duration
	// Metrics, when set, is served at GET MetricsPath (the local adapter's
	// METRICS=true); give the handlers the recorder behind it.
	Metrics http.Handler
}

// MetricsPath is where Options.Metrics is served.
const MetricsPath = "/metrics"

// Server routes by exact path; everything else is a JSON 404.
type Server struct {
	page     http.Handler
	devToken http.Handler // nil unless Options.DevTokens and tokens are on
	metrics  http.Handler // nil unless Options.Metrics
	ingest   *ingest.Handler
	stream   *stream.Handler
}

// New builds the relay on st. A PAGE_STREAM_ORIGINS entry that is not an
// http(s) origin is an error (config checks it too).
func New(st Store, cfg config.Config, opts Options) *Server {
	s := &Server{
		ingest: ingest.New(st, cfg, opts.Ingest),
		stream: stream.New(st, cfg, opts.Stream),
	}
	po := chatpage.Options{StreamOrigins: cfg.PageStreamOrigins}
	if opts.DevTokens && len(cfg.StreamTokenSecrets) > 0 {
		keys, err := token.NewKeys(cfg.StreamTokenSecrets)
		if err != nil {
			panic("server: " + err.Error()) // config has checked them
		}
		now := opts.Stream.Now
		if now == nil {
			now = time.Now
		}
		s.devToken = chatpage.DevTokenHandler(keys, now, opts.DevTokenTTL)
		po.TokenURL = chatpage.DevTokenPath
	}
	page, err := chatpage.NewHandler(po)
	if err != nil {
		panic("server: PAGE_STREAM_ORIGINS: " + err.Error()) // config has checked them
	}
	s.page = page
	s.metrics = opts.Metrics
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case ingest.Path, ingest.TokenPath:
		s.ingest.ServeHTTP(w, r)
	case stream.Path, stream.ClosePath:
		s.stream.ServeHTTP(w, r)
	case "/", "/index.html":
		s.page.ServeHTTP(w, r)
	case MetricsPath:
		if s.metrics == nil {
			jsonhttp.NotFound(w)
			return
		}
		s.metrics.ServeHTTP(w, r)
	case chatpage.DevTokenPath:
		if s.devToken == nil {
			jsonhttp.NotFound(w)
			return
		}
		s.devToken.ServeHTTP(w, r)
	default:
		jsonhttp.NotFound(w)
	}
}

// Drain ends open streams cleanly; see stream.Handler.Drain.
func (s *Server) Drain() { s.stream.Drain() }
