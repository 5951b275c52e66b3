// Command local runs the whole relay under net/http on one port: the chat
// page, POST/GET /api/webhook and the stream, with the very handlers the
// Lambdas use. The store is in memory unless DYNAMODB_ENDPOINT names a
// DynamoDB (Local), whose table is then created if missing.
//
//	go run ./local          # http://localhost:3000
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/logbuf"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/metrics/promtext"
	"github.com/webhook-relay/webhook-relay/internal/server"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/local/dotenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// One log line per request: buffered, not a system call each. run
	// returns after shutdown has ended every stream, and Close flushes.
	logs := logbuf.New(os.Stderr, logFlushInterval)
	err := run(ctx, os.LookupEnv, os.Stdout, logs)
	_ = logs.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook-relay:", err)
		os.Exit(1)
	}
}

// logFlushInterval is how late a log line may appear.
const logFlushInterval = 200 * time.Millisecond

// shutdownGrace bounds how long shutdown waits for requests in flight.
const shutdownGrace = 5 * time.Second

func run(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	return runWith(ctx, lookup, stdout, stderr, adapterOptions{})
}

// adapterOptions are the little the tests vary besides the environment.
type adapterOptions struct {
	// devTokenTTL is the lifetime of the chat page's stream tokens; zero is
	// chatpage.DefaultDevTokenTTL. The browser test shortens it to see the
	// page renew its token.
	devTokenTTL time.Duration
}

func runWith(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer, opts adapterOptions) error {
	// Like the seed guide's setup step: .env.local, then .env; the real
	// environment wins.
	getenv, loaded, err := dotenv.Getenv(lookup, ".env.local", ".env")
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	for _, f := range loaded {
		log.Info("read environment file", "file", f)
	}
	cfg, err := config.Load(config.Local, getenv)
	if err != nil {
		return err
	}

	var st server.Store
	backend := "memory"
	if cfg.DynamoDBEndpoint != "" {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		ds, err := dynamostore.Open(octx, cfg.DynamoDBEndpoint, cfg.TableName, true, store.Options{TTL: cfg.MessageTTL})
		cancel()
		if err != nil {
			return openError(cfg.DynamoDBEndpoint, cfg.TableName, err)
		}
		st, backend = ds, "dynamodb "+cfg.DynamoDBEndpoint+" table "+cfg.TableName
	} else {
		st = memstore.New(store.Options{TTL: cfg.MessageTTL})
	}

	var rec metrics.Recorder = metrics.Nop{}
	var metricsHandler http.Handler
	if cfg.Metrics {
		prom := promtext.New()
		rec, metricsHandler = prom, prom.Handler()
	}
	relay := server.New(st, cfg, server.Options{
		Ingest:  ingest.Options{Logger: log, Metrics: rec},
		Stream:  stream.Options{Logger: log, Metrics: rec},
		Metrics: metricsHandler,
		// The page of the local adapter may get its own stream tokens; the
		// handler serves loopback, same-origin requests only.
		DevTokens:   true,
		DevTokenTTL: opts.devTokenTTL,
	})
	srv := &http.Server{
		Handler:           relay,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut every stream. Each stream bounds
		// its own writes instead.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.RegisterOnShutdown(relay.Drain)
	// Shutdown waits up to 5s for a connection that has not sent a request
	// yet (browsers open them ahead); close those at once instead.
	fresh := newConnSet()
	srv.ConnState = fresh.track
	srv.RegisterOnShutdown(fresh.closeAll)

	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set PORT or HOST to change it): %w", addr, err)
	}
	url := "http://" + displayHost(cfg.Host) + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	log.Info("webhook-relay ready", "url", url, "store", backend, "secret", len(cfg.WebhookSecrets) > 0)
	secret := "" // the first of a rotation list: the one senders should move to
	if len(cfg.WebhookSecrets) > 0 {
		secret = cfg.WebhookSecrets[0]
	}
	fmt.Fprintf(stdout, "webhook-relay listening on %s (store: %s)\n  open the chat window: %s/\n  send a message:       %s\n",
		url, backend, url, bannerCurl(url, secret))
	if cfg.SigningSecret != nil {
		fmt.Fprintln(stdout, "  (WEBHOOK_SIGNING_SECRET is set: POSTs must also carry Standard Webhooks signature headers; see README.md)")
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: ending open streams")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// bannerCurl is the startup line's command, ready to paste: the secret is
// spelled out (this is the developer's own terminal, not the log) because
// the shell it is pasted into may not have WEBHOOK_SECRET, which often comes
// from .env.local.
func bannerCurl(url, secret string) string {
	cmd := "curl -X POST " + url + `/api/webhook -H "Content-Type: application/json"`
	if secret != "" {
		cmd += " -H " + shellQuote("X-Webhook-Secret: "+secret)
	}
	return cmd + ` -d '{"message": "Test message!"}'`
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// openError says what to do when the DynamoDB endpoint cannot be opened; a
// connection that fails or never answers is almost always DynamoDB Local
// not running (or running on another port).
func openError(endpoint, table string, err error) error {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &opErr):
		err = opErr
	case errors.As(err, &dnsErr):
		err = dnsErr
	case errors.Is(err, context.DeadlineExceeded):
		err = errors.New("no answer within a minute")
	default:
		return fmt.Errorf("open DynamoDB table %s at %s: %w", table, endpoint, err)
	}
	return fmt.Errorf("DYNAMODB_ENDPOINT=%s does not answer (%v): is DynamoDB Local running? `make dynamodb-local-start` starts it and prints the endpoint to use", endpoint, err)
}

// connSet holds the connections that have not sent a request yet.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newConnSet() *connSet { return &connSet{conns: map[net.Conn]struct{}{}} }

func (s *connSet) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == http.StateNew {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
}

func displayHost(host string) string {
	switch host {
	case "127.0.0.1", "::1", "0.0.0.0", "::", "":
		return "localhost"
	}
	return host
}
