// Package ingest serves POST /api/webhook (accept a message) and
// GET /api/webhook (health) as one http.Handler, the same under net/http
// and behind API Gateway.
package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/clientip"
	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/jsonhttp"
	"github.com/webhook-relay/webhook-relay/internal/logkey"
	"github.com/webhook-relay/webhook-relay/internal/message"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// Path is the route this handler serves.
const Path = "/api/webhook"

// Store is what ingest needs of the message store.
type Store interface {
	Append(ctx context.Context, msg message.Message, idemKey string) (store.AppendResult, error)
	IncrementCounter(ctx context.Context, key string, expiresAt time.Time) (int64, error)
	CountLeases(ctx context.Context) (int, error)
	CountLeasesOf(ctx context.Context, scope store.LeaseScope) (int, error)
}

// Options are the handler's collaborators besides the store.
type Options struct {
	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
	// RequestID names a request in logs; default: a Lambda request id when
	// the adapter put one in the context, else random.
	RequestID func(*http.Request) string
	// Metrics is told what each POST came to; default metrics.Nop.
	Metrics metrics.Recorder
}

// Handler is the ingest http.Handler.
type Handler struct {
	st        Store
	cfg       config.Config
	log       *slog.Logger
	now       func() time.Time
	requestID func(*http.Request) string
	secrets   [][sha256.Size]byte // digests of WEBHOOK_SECRET's entries
	keys      *token.Keys         // sign stream tokens; nil when they are off
	// logSession hashes session ids for the log (internal/logkey).
	logSession *logkey.Hasher
	metrics    metrics.Recorder
}

// storeTimeout bounds one request's store work; the stream's hole logic
// relies on writers finishing well within its stale age.
const storeTimeout = store.MaxWriteTime

// New returns the handler. It logs one warning when POST is left open.
func New(st Store, cfg config.Config, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestID == nil {
		opts.RequestID = randomID
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.Nop{}
	}
	// A Config built by hand may leave the bounds zero: config's defaults.
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = config.Defaults().MaxBodyBytes
	}
	if cfg.MaxMessageChars <= 0 {
		cfg.MaxMessageChars = config.Defaults().MaxMessageChars
	}
	if len(cfg.WebhookSecrets) == 0 && cfg.SigningSecret == nil {
		opts.Logger.Warn("WEBHOOK_SECRET is not set: anyone who can reach POST /api/webhook can send messages")
	}
	h := &Handler{st: st, cfg: cfg, log: opts.Logger, now: opts.Now, requestID: opts.RequestID, logSession: logkey.NewHasher(cfg.LogSessionKey), metrics: opts.Metrics}
	for _, s := range cfg.WebhookSecrets {
		h.secrets = append(h.secrets, sha256.Sum256([]byte(s)))
	}
	if len(cfg.StreamTokenSecrets) > 0 {
		// config has checked the secrets' length; NewKeys cannot fail then.
		keys, err := token.NewKeys(cfg.StreamTokenSecrets)
		if err != nil {
			panic("ingest: " + err.Error())
		}
		h.keys = keys
	}
	return h
}

func randomID(*http.Request) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// outcome is what one request did, for its log line.
type outcome struct {
	status    int
	result    string
	messageID string
	sessionID string
	replayed  bool
	listeners *int // streams open for the target of an accepted POST
	err       error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path && r.URL.Path != TokenPath {
		jsonhttp.NotFound(w)
		return
	}
	start := time.Now()
	var o outcome
	switch {
	case r.URL.Path == TokenPath:
		o = h.mint(w, r)
	case r.Method == http.MethodPost:
		o = h.post(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		o = h.health(w, r)
	default:
		jsonhttp.MethodNotAllowed(w, "GET, HEAD, POST")
		o = outcome{status: http.StatusMethodNotAllowed, result: "method not allowed"}
	}
	attrs := []slog.Attr{
		slog.String("requestId", h.requestID(r)),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("source", h.sourceIP(r)),
		slog.Int("status", o.status),
		slog.String("outcome", o.result),
		slog.Float64("latencyMs", float64(time.Since(start).Microseconds())/1000),
	}
	if o.messageID != "" {
		attrs = append(attrs, slog.String("messageId", o.messageID), slog.Bool("replayed", o.replayed))
	}
	if o.sessionID != "" {
		// Not the id: while anyone who knows it may listen, it is a credential.
		attrs = append(attrs, slog.String("session", h.logSession.Session(o.sessionID)))
	}
	if o.err != nil {
		attrs = append(attrs, slog.String("error", o.err.Error()))
	}
	if r.Method == http.MethodPost && r.URL.Path == Path {
		m := metrics.Webhook{Status: o.status, Listeners: -1,
			StoreError: o.err != nil && o.status >= 500, Throttled: errors.Is(o.err, store.ErrThrottled)}
		if o.listeners != nil {
			m.Listeners = *o.listeners
		}
		attrs = append(attrs, h.metrics.Webhook(m)...)
	}
	level := slog.LevelInfo
	switch {
	case o.status == http.StatusUnauthorized:
		level = slog.LevelWarn // rejected auth: watched for abuse
	case o.status >= 500:
		level = slog.LevelError
	}
	h.log.LogAttrs(r.Context(), level, "webhook request", attrs...)
}

func (h *Handler) fail(w http.ResponseWriter, status int, msg string) outcome {
	jsonhttp.Error(w, status, msg)
	return outcome{status: status, result: msg}
}

type accepted struct {
	Success   bool   `json:"success"`
	MessageID string `json:"messageId"`
	Timestamp int64  `json:"timestamp"`
	// Listeners is how many streams were open for the message's target
	// (its session's, or all for a broadcast) when it was accepted; absent
	// when the store could not count them.
	Listeners *int `json:"listeners,omitempty"`
}

// authorized checks X-Webhook-Secret when WEBHOOK_SECRET is set.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) (outcome, bool) {
	if len(h.secrets) == 0 {
		return outcome{}, true
	}
	got := r.Header.Get("X-Webhook-Secret")
	if h.secretMatches(got) {
		return outcome{}, true
	}
	if got == "" {
		return h.fail(w, http.StatusUnauthorized, "Missing X-Webhook-Secret header."), false
	}
	return h.fail(w, http.StatusUnauthorized, "Invalid webhook secret."), false
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) outcome {
	if o, ok := h.authorized(w, r); !ok {
		return o
	}
	kind := kindOf(r.Header.Get("Content-Type"))
	if kind == kindUnsupported {
		return h.fail(w, http.StatusUnsupportedMediaType, "Unsupported Content-Type; send application/json or application/x-www-form-urlencoded.")
	}
	gzipped, berr := checkEncoding(r.Header)
	if berr != nil {
		return h.fail(w, berr.status, berr.msg)
	}
	body, berr := readBody(w, r, h.cfg.MaxBodyBytes, gzipped)
	if berr != nil {
		return h.fail(w, berr.status, berr.msg)
	}
	// A signature covers the body as the sender wrote it: after transport
	// decoding, before anything else.
	if h.cfg.SigningSecret != nil {
		if reason := verifySignature(h.cfg.SigningSecret, r.Header, body, h.now()); reason != "" {
			return h.fail(w, http.StatusUnauthorized, reason)
		}
	}
	idemKey, keyName := r.Header.Get("Idempotency-Key"), "Idempotency-Key"
	if idemKey == "" || h.cfg.SigningSecret != nil {
		// A signed request's key is its signed webhook-id: an Idempotency-Key
		// is not signed, so a captured request replayed with a new one would
		// otherwise store the message again.
		idemKey, keyName = r.Header.Get("webhook-id"), "webhook-id"
	}
	if idemKey != "" {
		if err := store.ValidateIdempotencyKey(idemKey); err != nil {
			return h.fail(w, http.StatusBadRequest, err.Error())
		}
	}

	kind, body = sniffKind(kind, body)
	var p payload
	var err error
	if kind == kindForm {
		p, err = decodeForm(body)
	} else {
		p, err = decodeJSON(body)
	}
	if err == nil {
		err = message.ValidateText(p.Message, h.cfg.MaxMessageChars)
	}
	if err == nil && p.SessionID != "" {
		err = message.ValidateSessionID(p.SessionID)
	}
	if err != nil {
		o := h.fail(w, http.StatusBadRequest, err.Error())
		o.sessionID = safeSession(p.SessionID)
		return o
	}

	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if o, limited := h.rateLimit(ctx, w, r, p.SessionID); limited {
		o.sessionID = p.SessionID
		return o
	}
	msg := message.New(h.now(), p.SessionID, p.Message)
	res, err := h.st.Append(ctx, msg, idemKey)
	if err != nil {
		o := h.storeFault(w, err)
		o.sessionID = p.SessionID
		return o
	}
	if res.Replayed && (res.Message.Text != msg.Text || res.Message.SessionID != msg.SessionID) {
		// A sender that reuses a key (a static one in a template) would
		// otherwise get 200s for messages that were never stored.
		o := h.fail(w, http.StatusUnprocessableEntity, "This "+keyName+" was already used for a different message (another 'message' or 'sessionId'); nothing was stored. Send each new message with a new key.")
		o.sessionID = p.SessionID
		return o
	}
	listeners, err := h.listeners(ctx, res.Message.SessionID)
	if err != nil {
		// The message is stored: a missing count must not turn that into
		// an error. The sender sees no "listeners" field.
		h.log.LogAttrs(ctx, slog.LevelWarn, "listeners not counted: store unavailable", slog.String("error", err.Error()))
	}
	jsonhttp.Write(w, http.StatusOK, accepted{Success: true, MessageID: res.Message.ID, Timestamp: res.Message.Timestamp, Listeners: listeners})
	result := "accepted"
	if res.Replayed {
		result = "idempotent replay"
	}
	return outcome{status: http.StatusOK, result: result, messageID: res.Message.ID, sessionID: res.Message.SessionID, replayed: res.Replayed, listeners: listeners}
}

// secretMatches compares got with every entry of WEBHOOK_SECRET, each in
// constant time, and does not stop at a match: the time taken tells neither
// whether nor which one matched. Comparing digests keeps the lengths out of
// it too.
func (h *Handler) secretMatches(got string) bool {
	g := sha256.Sum256([]byte(got))
	match := 0
	for _, s := range h.secrets {
		match |= subtle.ConstantTimeCompare(g[:], s[:])
	}
	return match == 1
}

// safeSession logs a rejected session id only when it is well formed.
func safeSession(id string) string {
	if message.ValidateSessionID(id) == nil {
		return id
	}
	return ""
}

func (h *Handler) storeFault(w http.ResponseWriter, err error) outcome {
	var o outcome
	switch {
	case errors.Is(err, store.ErrUnknownOutcome):
		// Not a 503: that promises nothing was stored. The sender's retry
		// with the same key is answered from the record if it was.
		w.Header().Set("Retry-After", "1")
		o = h.fail(w, http.StatusGatewayTimeout, "The message store did not confirm the write; it may have been stored. Retry with the same Idempotency-Key to be sure it is stored once.")
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrHoleClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		w.Header().Set("Retry-After", "1")
		o = h.fail(w, http.StatusServiceUnavailable, "The message store is unavailable; nothing was stored. Retry shortly.")
	default:
		o = h.fail(w, http.StatusInternalServerError, "Internal error; nothing was stored.")
	}
	o.err = err
	return o
}

// rateLimit counts the request against its source and its target, in
// fixed one-minute windows shared by every instance through the store.
func (h *Handler) rateLimit(ctx context.Context, w http.ResponseWriter, r *http.Request, sessionID string) (outcome, bool) {
	now := h.now()
	window := now.Truncate(time.Minute)
	suffix := "#" + strconv.FormatInt(window.Unix(), 10)
	expires := window.Add(2 * time.Minute)
	target := "session:" + sessionID
	if sessionID == "" {
		target = "broadcast"
	}
	limits := []struct {
		limit int
		key   string
		what  string
	}{
		{h.cfg.RateLimitPerMinute, "ip#" + h.sourceIP(r) + suffix, "from this source"},
		{h.cfg.SessionRateLimitPerMinute, "target#" + target + suffix, "to this target"},
	}
	for _, l := range limits {
		if l.limit <= 0 {
			continue
		}
		n, err := h.st.IncrementCounter(ctx, l.key, expires)
		if err != nil {
			return h.storeFault(w, err), true
		}
		if n > int64(l.limit) {
			retry := int(window.Add(time.Minute).Sub(now).Seconds() + 0.999)
			w.Header().Set("Retry-After", strconv.Itoa(max(retry, 1)))
			return h.fail(w, http.StatusTooManyRequests, "Rate limit exceeded: at most "+strconv.Itoa(l.limit)+" messages per minute "+l.what+"."), true
		}
	}
	return outcome{}, false
}

// sourceIP is the client address (internal/clientip).
func (h *Handler) sourceIP(r *http.Request) string {
	return clientip.Source(r, h.cfg.TrustProxyHeaders)
}

type healthy struct {
	Status             string `json:"status"`
	ActiveConnections  int    `json:"activeConnections"`
	SessionConnections *int   `json:"sessionConnections,omitempty"`
}

// listeners counts the open streams of a message's target: the session's,
// or every stream for a broadcast (each follows the broadcast partition).
// With DynamoDB, a session costs one Query of its small lease partition;
// a broadcast, one per lease shard (docs/cost.md).
func (h *Handler) listeners(ctx context.Context, sessionID string) (*int, error) {
	var n int
	var err error
	if sessionID == "" {
		n, err = h.st.CountLeases(ctx)
	} else {
		n, err = h.st.CountLeasesOf(ctx, store.LeaseScope{SessionID: sessionID})
	}
	if err != nil {
		return nil, err
	}
	return &n, nil
}

type unhealthy struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

// health answers GET /api/webhook, and with ?sessionId= the presence of
// that session: whether someone is online is the session owner's business,
// so that needs the webhook secret when one is set.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) outcome {
	sessionID, presence := r.URL.Query().Get("sessionId"), r.URL.Query().Has("sessionId")
	if presence {
		if o, ok := h.authorized(w, r); !ok {
			return o
		}
		if err := message.ValidateSessionID(sessionID); err != nil {
			return h.fail(w, http.StatusBadRequest, message.QueryError(err))
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	n, err := h.st.CountLeases(ctx)
	var inSession *int
	if err == nil && presence {
		inSession, err = h.listeners(ctx, sessionID)
	}
	if err != nil {
		w.Header().Set("Retry-After", "1")
		jsonhttp.Write(w, http.StatusServiceUnavailable, unhealthy{Status: "error", Error: "The message store cannot be reached."})
		return outcome{status: http.StatusServiceUnavailable, result: "store unreachable", sessionID: sessionID, err: err}
	}
	jsonhttp.Write(w, http.StatusOK, healthy{Status: "ok", ActiveConnections: n, SessionConnections: inSession})
	return outcome{status: http.StatusOK, result: "ok", sessionID: sessionID}
}
