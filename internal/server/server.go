// Package server assembles the whole relay as one http.Handler: the chat
// page, the ingest endpoint and the stream, for the local adapter and for
// tests. The Lambdas serve the same ingest and stream handlers one each.
package server

import (
	"net/http"

	"github.com/webhook-relay/webhook-relay/internal/chatpage"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/stream"
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
}

// Server routes by exact path; everything else is a JSON 404.
type Server struct {
	page   http.Handler
	ingest *ingest.Handler
	stream *stream.Handler
}

// New builds the relay on st.
func New(st Store, cfg config.Config, opts Options) *Server {
	return &Server{
		page:   chatpage.Handler(),
		ingest: ingest.New(st, cfg, opts.Ingest),
		stream: stream.New(st, cfg, opts.Stream),
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case ingest.Path, ingest.TokenPath:
		s.ingest.ServeHTTP(w, r)
	case stream.Path:
		s.stream.ServeHTTP(w, r)
	case "/", "/index.html":
		s.page.ServeHTTP(w, r)
	default:
		jsonhttp.NotFound(w)
	}
}

// Drain ends open streams cleanly; see stream.Handler.Drain.
func (s *Server) Drain() { s.stream.Drain() }
