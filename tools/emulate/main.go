// Command emulate serves the real webhook and stream Lambda bootstrap
// binaries on one local port, each under the Lambda Runtime API emulator of
// package lambdaemu: "SAM local with streaming".
//
//	go run ./tools/emulate -webhook build/host/webhook/bootstrap -stream build/host/stream/bootstrap -addr 127.0.0.1:3000
//
// The two shapes of the SAM template's StreamEndpoint parameter:
//
//   - -stream-endpoint FunctionUrl (the default): /api/webhook/stream and
//     the paths under /api/webhook/stream/ go to the stream function as to a
//     function URL with InvokeMode RESPONSE_STREAM, relayed as it is
//     written; every other path (/api/webhook included) goes to the webhook
//     function as through an API Gateway HTTP API $default route (payload
//     2.0; -webhook-payload 1.0 for a REST API proxy resource), except GET /
//     and /index.html: the chat page (-page=false turns it off).
//   - -stream-endpoint RestApi: one REST API. The same stream paths go to
//     the stream function through a streaming Lambda proxy integration
//     (payload 1.0 in, the HTTP integration stream out, idle streams cut
//     after -rest-idle-timeout), every other path to the webhook function
//     through a buffered one (payload 1.0), and the webhook function serves
//     the chat page itself, as on AWS.
//
// The functions inherit this process's environment. When DYNAMODB_ENDPOINT
// is set (DynamoDB Local), TABLE_NAME is created there first if it is
// missing (-create-table=false to skip), since the functions expect the
// table the SAM template creates on AWS; given no function at all, it only
// creates the table (for sam local) and exits.
// SIGINT or SIGTERM stops it: open streams are cut, other requests get up to
// 10s to finish, then the functions get SIGTERM. A cut stream, like any
// client that goes away, does not stop its function: as on AWS it runs on
// (to its planned end, its timeout, or this shutdown), unaware.
//
// Every invocation gets a "report" line in the JSON log on stderr, with its
// billed duration (billedMs: from its delivery to the function's last byte,
// rounded up to the millisecond) and whether its client had gone; on
// shutdown a summary per function goes to stdout: invocations, billed
// seconds, and how many of those ran with the client gone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/chatpage"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

const streamPath = "/api/webhook/stream"

// The values of the template's StreamEndpoint parameter.
const (
	functionURL = "FunctionUrl"
	restAPI     = "RestApi"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "emulate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3000", "address to listen on")
	webhook := fs.String("webhook", "", "bootstrap `binary` of the webhook function (API Gateway)")
	stream := fs.String("stream", "", "bootstrap `binary` of the stream function (function URL, RESPONSE_STREAM)")
	payload := fs.String("webhook-payload", "2.0", "API Gateway payload `version` for the webhook function: 2.0 (HTTP API) or 1.0 (REST API)")
	webhookTimeout := fs.Duration("webhook-timeout", 30*time.Second, "timeout of the webhook function")
	streamTimeout := fs.Duration("stream-timeout", lambdaemu.DefaultTimeout, "timeout of the stream function")
	concurrency := fs.Int("concurrency", 10, "maximum processes per function, each serving one request at a time")
	page := fs.Bool("page", true, "serve the chat page at / and /index.html")
	createTable := fs.Bool("create-table", true, "with DYNAMODB_ENDPOINT set, create TABLE_NAME there if it is missing")
	shape := fs.String("stream-endpoint", functionURL, "the template's StreamEndpoint `shape`: FunctionUrl (HTTP API and function URL) or RestApi (one REST API)")
	idle := fs.Duration("rest-idle-timeout", lambdaemu.RESTIdleTimeout, "with RestApi: cut a stream that sends nothing for this long, as API Gateway does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *payload != "2.0" && *payload != "1.0" {
		return fmt.Errorf("-webhook-payload %q: want 2.0 or 1.0", *payload)
	}
	rest := *shape == restAPI
	if !rest && *shape != functionURL {
		return fmt.Errorf("-stream-endpoint %q: want %s or %s", *shape, functionURL, restAPI)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewJSONHandler(stderr, nil))

	endpoint := os.Getenv("DYNAMODB_ENDPOINT")
	if endpoint != "" && *createTable {
		table, err := ensureTable(ctx, endpoint)
		if err != nil {
			return err
		}
		if *webhook == "" && *stream == "" {
			// The table alone, for functions run elsewhere (sam local).
			fmt.Fprintf(stdout, "emulate: table %s ready at %s\n", table, endpoint)
			return nil
		}
	}
	if *webhook == "" && *stream == "" {
		return errors.New("nothing to run: give -webhook and/or -stream (or neither, with DYNAMODB_ENDPOINT set: create the table and exit)")
	}

	type function struct {
		label string
		e     *lambdaemu.Emulator
	}
	var emulators []function
	defer func() {
		for _, f := range emulators {
			f.e.Close()
		}
	}()
	start := func(label, path string, timeout time.Duration) (*lambdaemu.Emulator, error) {
		e, err := lambdaemu.Start(ctx, lambdaemu.Function{
			Path:        path,
			Env:         os.Environ(),
			Timeout:     timeout,
			Concurrency: *concurrency,
			Stdout:      stdout,
			Stderr:      stderr,
			Logger:      logger,
		})
		if err != nil {
			return nil, err
		}
		emulators = append(emulators, function{label, e})
		return e, nil
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()

	// Streams never end by themselves: shutting down cuts them.
	streams, cutStreams := context.WithCancel(context.Background())
	defer cutStreams()
	mux := http.NewServeMux()
	if *page && !rest {
		mux.Handle("GET /{$}", chatpage.Handler())
		mux.Handle("GET /index.html", chatpage.Handler())
		fmt.Fprintf(stdout, "emulate: chat page %s/\n", base)
	}
	if *webhook != "" {
		e, err := start("webhook", *webhook, *webhookTimeout)
		if err != nil {
			return err
		}
		h, kind := e.APIGatewayV2Handler(), "API Gateway HTTP API, payload 2.0"
		if *payload == "1.0" || rest {
			h, kind = e.APIGatewayV1Handler(), "API Gateway REST API, payload 1.0"
		}
		if rest {
			kind += "; the chat page at /"
		}
		mux.Handle("/", h)
		fmt.Fprintf(stdout, "emulate: webhook %s (init %v): %s/api/webhook and all other paths (%s)\n",
			*webhook, e.InitDuration().Round(time.Millisecond), base, kind)
	}
	if *stream != "" {
		e, err := start("stream", *stream, *streamTimeout)
		if err != nil {
			return err
		}
		h, kind := e.FunctionURLHandler(), "function URL, RESPONSE_STREAM"
		if rest {
			h, kind = e.APIGatewayV1StreamHandler(*idle), "API Gateway REST API, ResponseTransferMode STREAM"
		}
		// The close beacon and whatever else lives under the stream's path.
		mux.Handle(streamPath, cancelWith(streams, h))
		mux.Handle(streamPath+"/", cancelWith(streams, h))
		fmt.Fprintf(stdout, "emulate: stream %s (init %v): %s%s and below (%s)\n",
			*stream, e.InitDuration().Round(time.Millisecond), base, streamPath, kind)
	}

	srv := &http.Server{
		Handler:           logRequests(logger, mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv.RegisterOnShutdown(cutStreams)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "emulate: serving %s\n", base)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills at once
	fmt.Fprintln(stdout, "emulate: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	<-served
	for _, f := range emulators {
		f.e.Close() // ends the invocations still running, which completes their records
		fmt.Fprintf(stdout, "emulate: %s: %s\n", f.label, summary(f.e.Invocations()))
	}
	return nil
}

// summary tells what the invocations would be billed, and how much of it
// the functions spent with their client gone.
func summary(recs []lambdaemu.Invocation) string {
	var billed, orphaned time.Duration
	gone := 0
	for _, r := range recs {
		billed += r.Billed
		if r.ClientGone {
			gone++
			orphaned += r.End.Sub(r.ClientGoneAt)
		}
	}
	return fmt.Sprintf("%d invocations, billed %.3fs; %d ran on after their client left, for %.3fs",
		len(recs), billed.Seconds(), gone, orphaned.Seconds())
}

// ensureTable creates the table the functions use (TABLE_NAME, default
// webhook-relay) at endpoint if it is missing, as the template does on AWS,
// and returns its name.
func ensureTable(ctx context.Context, endpoint string) (string, error) {
	cfg, err := config.Load(config.Webhook|config.Stream, os.Getenv)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := dynamostore.NewClient(ctx, endpoint)
	if err != nil {
		return "", err
	}
	if err := dynamostore.CreateTable(ctx, client, cfg.TableName); err != nil {
		return "", fmt.Errorf("table %s at %s: %w", cfg.TableName, endpoint, err)
	}
	return cfg.TableName, nil
}

// cancelWith cancels the requests handled by h when done is.
func cancelWith(done context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(done, cancel)()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// logRequests logs one line per request, once it is over.
func logRequests(logger *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		begin := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			logger.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"bytes", sw.bytes, "duration", time.Since(begin))
		}()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter records the status; Unwrap keeps Flush reachable through
// http.ResponseController, which the stream relay needs.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
