// Package stream serves GET /api/webhook/stream: Server-Sent Events for one
// chat window, with replay, exact resume from Last-Event-ID, heartbeats, a
// connection lease, and a planned end before the Lambda deadline. The same
// handler runs under net/http, behind a function URL (RESPONSE_STREAM) and
// behind a REST API's streamed integration (internal/lambdaproxy.Stream).
package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/clientip"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/logkey"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/sse"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/tail"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// Path is the route this handler serves.
const Path = "/api/webhook/stream"

// Store is what a stream needs of the message store.
type Store interface {
	tail.Store
	PutLease(ctx context.Context, l store.Lease) error
	DeleteLease(ctx context.Context, l store.Lease) error
	CountLeasesOf(ctx context.Context, scope store.LeaseScope) (int, error)
	// LeaseOf and AppendClose serve a close request for a stream of
	// another instance.
	LeaseOf(ctx context.Context, id string) (store.Lease, bool, error)
	AppendClose(ctx context.Context, partition, connectionID string) error
}

// Options are the handler's collaborators besides the store.
type Options struct {
	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
	// WriteTimeout bounds one write to a client: a client that stops
	// reading is dropped once its socket buffers are full and this passes,
	// blocking no other stream. Default 10s.
	WriteTimeout time.Duration
	// Metrics is told of each stream's open and end; default metrics.Nop.
	Metrics metrics.Recorder
}

// Handler is the stream http.Handler.
type Handler struct {
	st  Store
	cfg config.Config
	log *slog.Logger
	now func() time.Time
	wto time.Duration
	enc *encoder
	// keys verify stream tokens; nil when STREAM_TOKEN_SECRET is unset and
	// streams are open to whoever knows a session id.
	keys *token.Keys

	drainCtx context.Context
	drain    context.CancelFunc

	mu   sync.Mutex
	live map[string]*liveStream // this instance's open streams, by connection id

	hub *tail.Hub // one reading of each partition for all the streams here
	// logSession hashes session ids for the log when tokens are off.
	logSession *logkey.Hasher
	metrics    metrics.Recorder
}

// New returns the handler.
func New(st Store, cfg config.Config, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.Nop{}
	}
	h := &Handler{st: st, cfg: cfg, log: opts.Logger, now: opts.Now, wto: opts.WriteTimeout, enc: newEncoder(4096)}
	if len(cfg.StreamTokenSecrets) > 0 {
		// config has checked the secrets' length; NewKeys cannot fail then.
		keys, err := token.NewKeys(cfg.StreamTokenSecrets)
		if err != nil {
			panic("stream: " + err.Error())
		}
		h.keys = keys
	}
	h.drainCtx, h.drain = context.WithCancel(context.Background())
	h.live = make(map[string]*liveStream)
	h.hub = tail.NewHub()
	h.logSession = logkey.NewHasher(cfg.LogSessionKey)
	h.metrics = opts.Metrics
	return h
}

// Drain ends every open stream cleanly (clients reconnect and resume), for
// graceful shutdown. Register it with http.Server.RegisterOnShutdown.
func (h *Handler) Drain() { h.drain() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == ClosePath {
		h.serveClose(w, r)
		return
	}
	if r.URL.Path != Path {
		jsonhttp.NotFound(w)
		return
	}
	allowed := h.cors(w, r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		preflight(w, allowed, "GET, OPTIONS", "Last-Event-ID, Cache-Control, Authorization")
		return
	default:
		jsonhttp.MethodNotAllowed(w, "GET, HEAD, OPTIONS")
		return
	}
	sessionID := r.URL.Query().Get("sessionId")
	if sessionID != "" {
		if err := message.ValidateSessionID(sessionID); err != nil {
			jsonhttp.Error(w, http.StatusBadRequest, message.QueryError(err))
			return
		}
	}
	var until time.Time // the token's expiry: the stream ends by then
	if h.keys != nil {
		claims, ok := h.authorize(w, r, sessionID)
		if !ok {
			return
		}
		sessionID, until = claims.SessionID, claims.ExpiresAt
	}
	// A lease counts towards its session (presence, and the session cap)
	// and, when that cap is on, its source IP: each scope is one more
	// small write per heartbeat.
	lease := store.Lease{ID: newConnectionID(), SessionID: sessionID}
	if h.cfg.MaxStreamsPerIP > 0 {
		lease.SourceIP = clientip.Source(r, h.cfg.TrustProxyHeaders)
	}
	if r.Method == http.MethodGet && !h.admit(w, r, lease) { // a HEAD holds no slot
		return
	}
	lastEventID := r.Header.Get("Last-Event-ID")
	if lastEventID == "" {
		lastEventID = r.URL.Query().Get("lastEventId")
	}
	h.serve(w, r, sessionID, lease, lastEventID, until)
}

// sessionAttr is how a log line names the session: with tokens on the id is
// no credential and is logged as it is; without, only a keyed hash of it
// (internal/logkey says how an operator finds a session's lines).
func (h *Handler) sessionAttr(sessionID string) slog.Attr {
	if h.keys != nil {
		return slog.String("sessionId", sessionID)
	}
	return slog.String("session", h.logSession.Session(sessionID))
}

// TokenCookie is the cookie a stream token may come in.
const TokenCookie = "webhook_relay_token"

// authorize checks the stream token: from the Authorization header, the
// cookie, or the query (EventSource can set neither header, and a function
// URL is another origin than the page, so the query is the browser's way:
// keep such tokens short-lived). A token with sid is for that session only;
// one without is for broadcasts only.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, sessionID string) (token.Claims, bool) {
	tok := ""
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
		tok = strings.TrimSpace(auth[7:])
	} else if c, err := r.Cookie(TokenCookie); err == nil {
		tok = c.Value
	} else {
		tok = r.URL.Query().Get("token")
	}
	refuse := func(status int, reason string) (token.Claims, bool) {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="webhook-relay"`)
		}
		jsonhttp.Error(w, status, reason)
		return token.Claims{}, false
	}
	if tok == "" {
		return refuse(http.StatusUnauthorized, "A stream token is required: send it as Authorization: Bearer, in the "+TokenCookie+" cookie, or as ?token=.")
	}
	claims, err := h.keys.Verify(tok, h.now())
	if err != nil {
		return refuse(http.StatusUnauthorized, err.Error())
	}
	switch {
	case claims.SessionID == "" && sessionID != "":
		return refuse(http.StatusForbidden, "The stream token is for broadcasts only; it does not grant a session.")
	case claims.SessionID != "" && sessionID != "" && sessionID != claims.SessionID:
		return refuse(http.StatusForbidden, "The stream token is for another session.")
	}
	return claims, true
}

// admit takes the stream's lease before the stream opens, so that a close
// request can find it as soon as the client knows the connection id and
// presence counts the stream from its first event. Then it enforces the
// caps on concurrent streams, counted from the leases of every instance:
// per source IP, and with tokens per session. Counting after the put, itself
// included, means a burst of opens cannot all see room (at worst a burst is
// refused a little early). A store that cannot answer lets the stream in:
// streams ride out outages, and the heartbeat retries the lease.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, lease store.Lease) bool {
	type streamCap struct {
		limit int
		scope store.LeaseScope
		what  string
	}
	caps := []streamCap{{h.cfg.MaxStreamsPerIP, store.LeaseScope{SourceIP: lease.SourceIP}, "from this address"}}
	if h.keys != nil { // without tokens anyone may pick a session id: no cap to protect
		caps = append(caps, streamCap{h.cfg.MaxStreamsPerSession, store.LeaseScope{SessionID: lease.SessionID}, "for this session"})
	}
	caps = slices.DeleteFunc(caps, func(c streamCap) bool { return c.limit <= 0 || c.scope == (store.LeaseScope{}) })
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	lease.ExpiresAt = h.now().Add(h.leaseTTL())
	if err := h.st.PutLease(ctx, lease); err != nil {
		h.log.LogAttrs(ctx, slog.LevelWarn, "stream lease not taken (caps not checked): store unavailable", slog.String("error", err.Error()))
		return true
	}
	for _, c := range caps {
		n, err := h.st.CountLeasesOf(ctx, c.scope)
		if err != nil {
			h.log.LogAttrs(ctx, slog.LevelWarn, "stream cap not checked: store unavailable", slog.String("error", err.Error()))
			continue
		}
		if n > c.limit {
			if err := h.st.DeleteLease(ctx, lease); err != nil {
				h.log.LogAttrs(ctx, slog.LevelWarn, "lease release failed; it expires by itself", slog.String("error", err.Error()))
			}
			// An open stream renews its lease every heartbeat and frees it
			// when it ends: a slot is free again within about that.
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(h.cfg.HeartbeatInterval/time.Second))))
			jsonhttp.Error(w, http.StatusTooManyRequests, "Too many open streams "+c.what+": at most "+strconv.Itoa(c.limit)+". Close one, or retry later.")
			return false
		}
	}
	return true
}

// cors sets CORS headers for an allowed Origin and reports whether the
// request may proceed cross-origin. Without ALLOWED_ORIGINS only the same
// origin is served (browsers send no CORS check for it).
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	w.Header().Add("Vary", "Origin")
	if slices.Contains(h.cfg.AllowedOrigins, "*") {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		return true
	}
	if slices.Contains(h.cfg.AllowedOrigins, origin) {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		return true
	}
	return false
}

// preflight answers a CORS preflight for an origin cors allowed, or not.
func preflight(w http.ResponseWriter, allowed bool, methods, headers string) {
	if !allowed {
		jsonhttp.Error(w, http.StatusForbidden, "Origin not allowed.")
		return
	}
	w.Header().Set("Access-Control-Allow-Methods", methods)
	if headers != "" {
		w.Header().Set("Access-Control-Allow-Headers", headers)
	}
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// conn is one open stream. Its writes are serialised by mu: the heartbeat
// runs on a timer of its own, so that a store call caught in SDK retries
// (throttling) never delays it.
type conn struct {
	wto       time.Duration
	deadline  time.Time
	w         http.ResponseWriter
	rc        *http.ResponseController
	buf       []byte
	events    int
	delivered int       // webhook messages, replay included
	flushedAt time.Time // when news was last written; used by the loop alone, without mu

	mu     sync.Mutex
	closed bool // the handler returned or is returning: no more writes
	beats  sync.WaitGroup
}

// flush writes what is buffered.
func (c *conn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// flushLocked writes what is buffered. Callers hold c.mu.
func (c *conn) flushLocked() error {
	// Move the write deadline only once half of it is used: a syscall-free
	// flush matters when one message goes to thousands of streams.
	if now := time.Now(); c.deadline.Sub(now) < c.wto/2 {
		c.deadline = now.Add(c.wto)
		_ = c.rc.SetWriteDeadline(c.deadline) // unsupported on Lambda: fine
	}
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		return err
	}
	if err := c.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

type connected struct {
	Type         string  `json:"type"`
	ConnectionID string  `json:"connectionId"`
	SessionID    *string `json:"sessionId"`
}

type reset struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

type webhookMessage struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Message   string  `json:"message"`
	SessionID *string `json:"sessionId"`
	Timestamp int64   `json:"timestamp"`
}

func (c *conn) event(id string, v any) {
	data, err := json.Marshal(v)
	if err != nil { // the event types above always marshal
		panic(err)
	}
	c.buf = sse.AppendEvent(c.buf, id, data)
	c.events++
}

func (c *conn) deliver(enc *encoder, d tail.Delivery) {
	// The data is one-line JSON (encoding/json escapes line breaks), so it
	// needs no splitting over data: lines.
	b := append(c.buf, "id: "...)
	b = d.Cursor.Append(b)
	b = append(b, "\ndata: "...)
	b = append(b, enc.data(d.Message)...)
	c.buf = append(b, '\n', '\n')
	c.events++
	c.delivered++
}

func newConnectionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// endAt is when the stream ends by plan: MAX_STREAM_DURATION, the request's
// deadline (the Lambda's) minus STREAM_DEADLINE_MARGIN, or the token's
// expiry, whichever is first: a token's lifetime bounds what it can read.
func (h *Handler) endAt(r *http.Request, start, until time.Time) time.Time {
	end := start.Add(h.cfg.MaxStreamDuration)
	if dl, ok := r.Context().Deadline(); ok {
		end = minTime(end, dl.Add(-h.cfg.StreamDeadlineMargin))
	}
	if !until.IsZero() {
		end = minTime(end, until)
	}
	return end
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// serve runs one stream. Its state lives in a liveStream on the heap and
// its steps are functions of their own, so that the goroutine of an idle
// stream parks on short frames: the runtime then shrinks its stack back to
// 8 KB after a poll grew it, which is most of what an idle stream costs.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, sessionID string, lease store.Lease, lastEventID string, until time.Time) {
	ls := h.begin(w, r, sessionID, lease, until)
	if ls == nil {
		return // HEAD
	}
	defer ls.finish()
	if ls.openAndFlush(lastEventID) {
		ls.loop()
	}
}

// liveStream is one open stream of this instance.
type liveStream struct {
	h         *Handler
	id        string
	sessionID string
	lease     store.Lease
	start     time.Time
	end       time.Time // the planned end
	c         *conn
	ctx       context.Context // ends the stream: client gone, planned end, Drain, close
	cancel    context.CancelFunc
	stopDrain func() bool
	log       *slog.Logger
	f         *tail.Follower // set once open
	reason    string         // why it ended, once known; "client gone" until then
	beat      *time.Timer
	leaseTTL  time.Duration
	leaseBusy bool // a renewal in flight; guarded by c.mu

	failed atomic.Bool   // a heartbeat write failed
	closed atomic.Bool   // ended by a close request
	done   chan struct{} // closed once the stream released its lease
}

// begin writes the headers and starts the stream's context, registration
// and heartbeat. It returns nil for a HEAD.
//
//go:noinline
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, sessionID string, lease store.Lease, until time.Time) *liveStream {
	start := time.Now()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Connection", "keep-alive")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	ls := &liveStream{h: h, id: lease.ID, sessionID: sessionID, lease: lease, start: start,
		end: h.endAt(r, start, until), reason: "client gone", leaseTTL: h.leaseTTL(), done: make(chan struct{})}
	ls.c = &conn{wto: h.wto, w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 256)}
	ls.c.buf = sse.AppendRetry(ls.c.buf, h.cfg.RetryMS)
	// One context ends the stream: the client leaving, the planned end,
	// server shutdown (Drain) or a close request; the reason is told apart
	// at the end.
	ls.ctx, ls.cancel = context.WithDeadline(r.Context(), ls.end)
	ls.stopDrain = context.AfterFunc(h.drainCtx, ls.cancel)
	ls.log = h.log.With(slog.String("connectionId", ls.id), h.sessionAttr(sessionID))
	h.mu.Lock()
	h.live[ls.id] = ls
	h.mu.Unlock()

	// The heartbeat runs on a timer of its own from the start, through the
	// open (which may wait on holes or a throttled store) and the loop, and
	// renews the lease without holding either. Armed only once beat is
	// assigned: the callback re-arms it.
	ls.beat = time.AfterFunc(time.Duration(math.MaxInt64), ls.heartbeat)
	ls.beat.Reset(h.cfg.HeartbeatInterval)
	return ls
}

func (ls *liveStream) heartbeat() {
	c := ls.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.buf = sse.AppendComment(c.buf, "heartbeat")
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		ls.failed.Store(true)
		ls.cancel()
		return
	}
	ls.beat.Reset(ls.h.cfg.HeartbeatInterval)
	ls.renew()
}

// renew puts the lease again, in the background; one renewal at a time.
func (ls *liveStream) renew() {
	c := ls.c
	c.mu.Lock()
	if c.closed || ls.leaseBusy {
		c.mu.Unlock()
		return
	}
	ls.leaseBusy = true
	c.beats.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.beats.Done()
		ls.h.putLease(ls.ctx, ls.log, ls.lease, ls.leaseTTL)
		c.mu.Lock()
		ls.leaseBusy = false
		c.mu.Unlock()
	}()
}

// openAndFlush positions the stream and sends the connected event and the
// replay; false when the stream ended meanwhile.
//
//go:noinline
func (ls *liveStream) openAndFlush(lastEventID string) bool {
	ls.f = ls.h.open(ls.ctx, ls.log, ls.c, ls.id, ls.sessionID, lastEventID)
	if ls.f == nil {
		return false
	}
	if err := ls.c.flush(); err != nil {
		ls.reason = "write failed"
		return false
	}
	return true
}

// loop delivers until the stream ends.
//
//go:noinline
func (ls *liveStream) loop() {
	poll := time.NewTimer(0)
	defer poll.Stop()
	var wake tail.Wake
	var storeDown bool
	for {
		timed := false
		select {
		case <-ls.ctx.Done():
			if ls.failed.Load() {
				ls.reason = "write failed"
			}
			return
		case <-wake.C[0]:
		case <-wake.C[1]:
		case <-poll.C:
			timed = true
		}
		if !timed && ls.hold(poll, &wake) {
			continue
		}
		var err error
		if wake, storeDown, err = ls.h.step(ls.ctx, ls.log, ls.c, ls.f, storeDown); err != nil {
			ls.reason = "write failed"
			return
		}
		if ls.f.Closed() {
			ls.reason = "closed"
			return
		}
		poll.Reset(wake.After)
	}
}

// hold defers a step woken by news until FlushDelay has passed since the
// stream last wrote news: under load each write then carries many events
// (a write is most of what a delivery costs), while the first event after
// a quiet spell goes out at once. It reports whether it deferred.
func (ls *liveStream) hold(poll *time.Timer, wake *tail.Wake) bool {
	d := ls.h.cfg.FlushDelay - time.Since(ls.c.flushedAt)
	if d <= 0 {
		return false
	}
	poll.Reset(d)
	wake.C = [2]<-chan struct{}{}
	return true
}

// finish stops the heartbeat, releases the lease (waiting for a renewal in
// flight, so that none lands after the delete), logs the end and
// unregisters the stream.
//
//go:noinline
func (ls *liveStream) finish() {
	h, c := ls.h, ls.c
	if ls.f != nil {
		ls.f.Close()
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	ls.beat.Stop()
	c.beats.Wait()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ls.ctx), 5*time.Second)
	if err := h.st.DeleteLease(dctx, ls.lease); err != nil {
		ls.log.LogAttrs(dctx, slog.LevelWarn, "lease release failed; it expires by itself", slog.String("error", err.Error()))
	}
	cancel()

	switch {
	case ls.reason != "client gone":
	case ls.closed.Load():
		ls.reason = "closed"
	case h.drainCtx.Err() != nil:
		ls.reason = "server shutdown"
	case !time.Now().Before(ls.end):
		ls.reason = "planned end"
	}
	lived, holes := time.Since(ls.start), 0
	if ls.f != nil {
		holes = ls.f.HolesClosed()
	}
	attrs := append([]slog.Attr{slog.String("reason", ls.reason), slog.Int("events", c.events),
		slog.Float64("durationMs", float64(lived.Microseconds())/1000)},
		h.metrics.StreamEnded(metrics.StreamEnd{Reason: ls.reason, Duration: lived, Delivered: c.delivered, Holes: holes})...)
	ls.log.LogAttrs(context.Background(), slog.LevelInfo, "stream closed", attrs...)

	h.mu.Lock()
	delete(h.live, ls.id)
	h.mu.Unlock()
	close(ls.done)
	ls.stopDrain()
	ls.cancel()
}

// open positions the stream and queues the connected event, any reset, and
// the replay in c. It retries through a store outage with comments:
// answering with an error status would make EventSource give up for good.
// It returns nil when ctx ends first. Kept out of serve, like step, so that
// serve's frame stays small: an idle stream then parks on an 8 KB stack.
//
//go:noinline
func (h *Handler) open(ctx context.Context, log *slog.Logger, c *conn, id, sessionID, lastEventID string) *tail.Follower {
	topts := tail.Options{
		HoleTimeout: h.cfg.HoleTimeout, PollInterval: h.cfg.PollInterval,
		ReplayCount: h.cfg.ReplayCount, Retention: h.cfg.MessageTTL, Now: h.now,
		ConnectionID: id, Hub: h.hub,
	}
	for {
		f, replay, why, err := tail.Open(ctx, h.st, topts, sessionID, lastEventID)
		if err == nil {
			cur := f.Start().String()
			var sid *string
			if sessionID != "" {
				sid = &sessionID
			}
			c.mu.Lock()
			c.event(cur, connected{Type: "connected", ConnectionID: id, SessionID: sid})
			if why != "" {
				c.event(cur, reset{Type: "reset", Reason: why})
			}
			for _, d := range replay {
				c.deliver(h.enc, d)
			}
			c.mu.Unlock()
			log.LogAttrs(ctx, slog.LevelInfo, "stream opened", append([]slog.Attr{slog.String("cursor", cur),
				slog.Bool("resumed", lastEventID != "" && why == ""), slog.String("reset", why),
				slog.Int("replayed", len(replay))}, h.metrics.StreamOpened()...)...)
			return f
		}
		if ctx.Err() != nil {
			return nil
		}
		log.LogAttrs(ctx, slog.LevelWarn, "stream open failed; retrying", slog.String("error", err.Error()))
		c.mu.Lock()
		c.buf = sse.AppendComment(c.buf, "store unavailable, retrying")
		err = c.flushLocked()
		c.mu.Unlock()
		if err != nil {
			return nil
		}
		retry := time.NewTimer(h.cfg.PollInterval)
		select {
		case <-ctx.Done():
			retry.Stop()
			return nil
		case <-retry.C:
		}
	}
}

// step delivers what became available and says when to look again. A store
// error is logged once per outage; the stream keeps heartbeating meanwhile.
// Only a failed write to the client is returned.
//
//go:noinline
func (h *Handler) step(ctx context.Context, log *slog.Logger, c *conn, f *tail.Follower, storeDown bool) (tail.Wake, bool, error) {
	ds, err := f.Poll(ctx)
	if len(ds) > 0 {
		c.mu.Lock()
		for _, d := range ds {
			c.deliver(h.enc, d)
		}
		werr := c.flushLocked()
		c.mu.Unlock()
		if werr != nil {
			return tail.Wake{}, storeDown, werr
		}
		c.flushedAt = time.Now()
	}
	wake := f.Next()
	switch {
	case err != nil && ctx.Err() == nil:
		if !storeDown {
			log.LogAttrs(ctx, slog.LevelWarn, "store read failed; the stream keeps heartbeating and retries", slog.String("error", err.Error()))
		}
		storeDown = true
		wake.After = max(wake.After, h.cfg.PollInterval)
	case err == nil && storeDown:
		storeDown = false
		log.LogAttrs(ctx, slog.LevelInfo, "store reads recovered")
	}
	return wake, storeDown, nil
}

// leaseTTL outlives two missed renewals, so that one slow heartbeat does not
// make an open stream look gone.
func (h *Handler) leaseTTL() time.Duration { return 2*h.cfg.HeartbeatInterval + 5*time.Second }

func (h *Handler) putLease(ctx context.Context, log *slog.Logger, lease store.Lease, ttl time.Duration) {
	// Not cancelled with the client: a put abandoned mid-flight could land
	// after the release and leave a lease behind until it expires.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	lease.ExpiresAt = h.now().Add(ttl)
	if err := h.st.PutLease(ctx, lease); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "lease renewal failed", slog.String("error", err.Error()))
	}
}
