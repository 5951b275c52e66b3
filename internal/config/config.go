// Package config reads the service's environment variables once at start
// (the README's configuration table). The same names work locally and on
// Lambda; every default lives here (Variables, Defaults); a value that
// makes no sense stops the process with an error naming the variable.
package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/store"
	"github.com/webhook-relay/webhook-relay/internal/token"
)

// Component is a process that reads configuration.
type Component uint8

// The components; a variable lists those that read it.
const (
	Webhook Component = 1 << iota // functions/webhook
	Stream                        // functions/stream
	Local                         // the local adapter: both, plus local-only variables
)

// Var describes one environment variable.
type Var struct {
	Name    string
	Default string
	Meaning string
	UsedBy  Component
	// LocalOnly variables are never set on Lambda (the template omits them).
	LocalOnly bool
	set       func(c *Config, v string) error
}

// Config is the parsed configuration.
type Config struct {
	WebhookSecrets            []string // any one is accepted (rotation); nil: POST is open
	SigningSecret             []byte   // decoded from whsec_<base64>; nil when unset
	LogSessionKey             string   // keys the hash logged for a session id (internal/logkey)
	TableName                 string
	DynamoDBEndpoint          string
	MessageTTL                time.Duration
	ReplayCount               int
	HeartbeatInterval         time.Duration
	PollInterval              time.Duration
	HoleTimeout               time.Duration
	FlushDelay                time.Duration // least time between two writes of news to one stream
	MaxStreamDuration         time.Duration
	StreamDeadlineMargin      time.Duration
	RetryMS                   int
	MaxMessageChars           int
	MaxBodyBytes              int64
	RateLimitPerMinute        int
	SessionRateLimitPerMinute int
	TrustProxyHeaders         bool
	AllowedOrigins            []string // empty: same origin only; "*" allows any
	StreamTokenSecrets        [][]byte // nil: streams are open; else sign with the first, accept any
	MaxStreamsPerIP           int      // 0: no cap
	MaxStreamsPerSession      int      // 0: no cap; applies with stream tokens on
	PageStreamOrigins         []string // origins the chat page's ?stream= may name besides its own
	Port                      int
	Metrics                   bool // the local adapter serves GET /metrics
	Host                      string
}

// Bounds that follow from DynamoDB and the hole logic, not from taste.
const (
	// MaxMessageChars keeps a message's item under DynamoDB's 400 KB item
	// limit: 4 bytes per character at most, plus the item's other fields.
	MaxMessageChars = 100_000
	// MaxBodyBytes is DynamoDB's item limit, 400 KB: a larger body cannot
	// carry a message that could be stored.
	MaxBodyBytes = 400 << 10
	// MinMessageTTL is the store's: a message must outlive the age after
	// which a missing number next to it is closed without waiting.
	MinMessageTTL = store.MinTTL
)

func setMessageTTL(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 1h or 24h")
	}
	if d < MinMessageTTL {
		return fmt.Errorf("must be at least %v: readers close a missing sequence number without waiting once its neighbour is %v old, so a message must be retained at least twice that", MinMessageTTL, store.StaleAge)
	}
	c.MessageTTL = d
	return nil
}

// Variables lists every variable, in the order of the README's table.
func Variables() []Var {
	both := Webhook | Stream | Local
	return []Var{
		{"WEBHOOK_SECRET", "", "Required `X-Webhook-Secret` value for POST. A comma list accepts any one of them, for rotation without a gap (spaces around entries are trimmed). Unset leaves POST open (a warning is logged).", Webhook | Local, false, setWebhookSecrets},
		{"WEBHOOK_SIGNING_SECRET", "", "`whsec_<base64>`: verify Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).", Webhook | Local, false, setSigningSecret},
		{"LOG_SESSION_KEY", "", "Key of the hash logged in place of a session id (`session`: the first 12 hex characters of HMAC-SHA256(key, sessionId)); unset still hashes, with an empty key.", Webhook | Stream | Local, false,
			func(c *Config, v string) error { c.LogSessionKey = v; return nil }},
		{"TABLE_NAME", "webhook-relay", "DynamoDB table.", both, false,
			func(c *Config, v string) error { c.TableName = v; return nonEmpty(v) }},
		{"DYNAMODB_ENDPOINT", "", "DynamoDB Local or another endpoint; for the local adapter it selects DynamoDB instead of the memory store.", both, true,
			setDynamoDBEndpoint},
		{"MESSAGE_TTL", durationText(store.DefaultTTL), "Retention of messages (and tombstones); at least " + MinMessageTTL.String() + ".", both, false, setMessageTTL},
		{"REPLAY_COUNT", "5", "Recent messages replayed to a new stream, in total across its partitions.", Stream | Local, false, integer(func(c *Config) *int { return &c.ReplayCount }, 0, 1000)},
		{"HEARTBEAT_INTERVAL", "30s", "SSE heartbeat comment interval; connection leases are renewed with it.", Stream | Local, false, duration(func(c *Config) *time.Duration { return &c.HeartbeatInterval }, 1)},
		{"POLL_INTERVAL", "1s", "How often a stream reads DynamoDB for new messages (the memory store wakes streams at once).", Stream | Local, false, duration(func(c *Config) *time.Duration { return &c.PollInterval }, 1)},
		{"FLUSH_DELAY", "2ms", "Least time between two writes of messages to one stream: what arrives meanwhile goes out in one write, so a busy stream makes fewer, larger writes; the first message after a quiet spell is written at once. 0 writes each wake-up at once; at most 1s.", Stream | Local, false,
			func(c *Config, v string) error {
				if err := duration(func(c *Config) *time.Duration { return &c.FlushDelay }, 0)(c, v); err != nil {
					return err
				}
				if c.FlushDelay > time.Second {
					return fmt.Errorf("at most 1s: a stream's messages would wait that long under load")
				}
				return nil
			}},
		{"HOLE_TIMEOUT", "2s", "How long a stream waits for a missing sequence number before closing the hole.", Stream | Local, false, duration(func(c *Config) *time.Duration { return &c.HoleTimeout }, 1)},
		{"MAX_STREAM_DURATION", "14m", "Planned end of a stream; the browser reconnects and resumes exactly.", Stream | Local, false, duration(func(c *Config) *time.Duration { return &c.MaxStreamDuration }, 1)},
		{"STREAM_DEADLINE_MARGIN", "10s", "End a stream this long before the Lambda deadline.", Stream | Local, false, duration(func(c *Config) *time.Duration { return &c.StreamDeadlineMargin }, 0)},
		{"RETRY_MS", "3000", "SSE `retry:` sent to the browser, in milliseconds.", Stream | Local, false, integer(func(c *Config) *int { return &c.RetryMS }, 0, 3600000)},
		{"MAX_MESSAGE_CHARS", "4000", "Longest message, in characters; at most " + strconv.Itoa(MaxMessageChars) + ".", Webhook | Local, false,
			func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > MaxMessageChars {
					return fmt.Errorf("want a whole number from 1 to %d: a character can take 4 bytes, and a message must fit one DynamoDB item (400 KB)", MaxMessageChars)
				}
				c.MaxMessageChars = n
				return nil
			}},
		{"MAX_BODY_BYTES", "65536", "Largest request body (after gzip decoding); larger gets 413. At most " + strconv.Itoa(MaxBodyBytes) + ".", Webhook | Local, false,
			func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 || n > MaxBodyBytes {
					return fmt.Errorf("want a whole number of bytes from 1 to %d: DynamoDB stores at most 400 KB per item, so a larger body could not be stored", MaxBodyBytes)
				}
				c.MaxBodyBytes = n
				return nil
			}},
		{"RATE_LIMIT_PER_MINUTE", "600", "POSTs per minute per source IP, across all instances; 0 disables.", Webhook | Local, false, integer(func(c *Config) *int { return &c.RateLimitPerMinute }, 0, 1<<30)},
		{"SESSION_RATE_LIMIT_PER_MINUTE", "120", "POSTs per minute per target session (broadcast is one target); 0 disables.", Webhook | Local, false, integer(func(c *Config) *int { return &c.SessionRateLimitPerMinute }, 0, 1<<30)},
		{"TRUST_PROXY_HEADERS", "false", "Take the source IP from the last `X-Forwarded-For` entry, the one your proxy appended (only behind one proxy you run; entries before it are the client's and are ignored).", Webhook | Stream | Local, false,
			boolean(func(c *Config) *bool { return &c.TrustProxyHeaders })},
		{"ALLOWED_ORIGINS", "", "CORS origins for the stream: comma list, or `*`; unset allows the same origin only.", Stream | Local, false, setOrigins},
		{"STREAM_TOKEN_SECRET", "", "Enables stream tokens (JWT HS256): every stream needs one. Comma list of secrets of at least 32 bytes; tokens are signed with the first and accepted with any (rotation).", Webhook | Stream | Local, false, setTokenSecrets},
		{"MAX_STREAMS_PER_IP", "10", "Concurrent streams per source IP across all instances; past it 429. 0 disables.", Stream | Local, false, integer(func(c *Config) *int { return &c.MaxStreamsPerIP }, 0, 1<<20)},
		{"MAX_STREAMS_PER_SESSION", "10", "With stream tokens on: concurrent streams per token session (NAT does not blur it). 0 disables.", Stream | Local, false, integer(func(c *Config) *int { return &c.MaxStreamsPerSession }, 0, 1<<20)},
		{"PAGE_STREAM_ORIGINS", "", "Origins the chat page's `?stream=` may point at besides its own (comma list); unset: its own only.", Local, true,
			func(c *Config, v string) error {
				c.PageStreamOrigins = nil
				for o := range strings.SplitSeq(v, ",") {
					if o = strings.TrimRight(strings.TrimSpace(o), "/"); o == "" {
						continue
					}
					if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
						return fmt.Errorf("origin %q must start with http:// or https://", o)
					}
					c.PageStreamOrigins = append(c.PageStreamOrigins, o)
				}
				return nil
			}},
		{"PORT", "3000", "Local adapter port.", Local, true, integer(func(c *Config) *int { return &c.Port }, 0, 65535)},
		{"METRICS", "false", "Local adapter: serve the counters at `GET /metrics` (Prometheus text format). Off by default: they tell anyone who can reach the port how busy the relay is. On Lambda the same metrics go to CloudWatch as EMF log lines.", Local, true,
			boolean(func(c *Config) *bool { return &c.Metrics })},
		{"HOST", "127.0.0.1", "Local adapter bind address.", Local, true,
			func(c *Config, v string) error { c.Host = v; return nonEmpty(v) }},
	}
}

// durationText writes d as a default is written in the README: 24h, not
// 24h0m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Load parses the variables component reads, taking values from getenv
// (os.Getenv in production) and defaults for the unset ones.
func Load(component Component, getenv func(string) string) (Config, error) {
	var c Config
	for _, v := range Variables() {
		if v.UsedBy&component == 0 {
			continue
		}
		val := strings.TrimSpace(getenv(v.Name))
		if val == "" {
			val = v.Default
		}
		if val == "" && v.Default == "" {
			if err := v.set(&c, ""); err != nil {
				return Config{}, fmt.Errorf("%s: %w", v.Name, err)
			}
			continue
		}
		if err := v.set(&c, val); err != nil {
			return Config{}, fmt.Errorf("invalid %s=%q: %w", v.Name, redact(v.Name, val), err)
		}
	}
	return c, nil
}

// Defaults returns the configuration with every variable unset.
func Defaults() Config {
	c, err := Load(Webhook|Stream|Local, func(string) string { return "" })
	if err != nil {
		panic("config defaults do not parse: " + err.Error())
	}
	return c
}

func redact(name, val string) string {
	if strings.Contains(name, "SECRET") {
		return "<redacted>"
	}
	return val
}

func nonEmpty(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	return nil
}

func duration(field func(*Config) *time.Duration, minimum time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms, 30s or 14m")
		}
		if d < minimum {
			if minimum > 0 {
				return fmt.Errorf("must be positive")
			}
			return fmt.Errorf("must not be negative")
		}
		*field(c) = d
		return nil
	}
}

func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		*field(c) = b
		return nil
	}
}

func integer(field func(*Config) *int, lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func setTokenSecrets(c *Config, v string) error {
	c.StreamTokenSecrets = nil
	for sec := range strings.SplitSeq(v, ",") {
		if sec = strings.TrimSpace(sec); sec == "" {
			continue
		}
		if len(sec) < token.MinSecretBytes {
			return fmt.Errorf("each secret must be at least %d bytes (HS256 wants a key as long as its output); one is %d", token.MinSecretBytes, len(sec))
		}
		c.StreamTokenSecrets = append(c.StreamTokenSecrets, []byte(sec))
	}
	return nil
}

func setSigningSecret(c *Config, v string) error {
	if v == "" {
		return nil
	}
	raw, ok := strings.CutPrefix(v, "whsec_")
	if !ok {
		return fmt.Errorf("want whsec_ followed by base64")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("want whsec_ followed by base64")
	}
	c.SigningSecret = key
	return nil
}

// setWebhookSecrets reads a comma list. A value that lists no secret at all
// (",") is refused rather than leaving POST open.
func setWebhookSecrets(c *Config, v string) error {
	c.WebhookSecrets = nil
	for sec := range strings.SplitSeq(v, ",") {
		if sec = strings.TrimSpace(sec); sec != "" {
			c.WebhookSecrets = append(c.WebhookSecrets, sec)
		}
	}
	if v != "" && len(c.WebhookSecrets) == 0 {
		return fmt.Errorf("lists no secret; want one value, or several separated by commas")
	}
	return nil
}

// setDynamoDBEndpoint wants a URL with a scheme: the SDK takes
// "localhost:8000" as a scheme "localhost" and fails far from here.
func setDynamoDBEndpoint(c *Config, v string) error {
	c.DynamoDBEndpoint = v
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want a URL starting with http:// or https://, such as http://localhost:8000 (`make dynamodb-local-start` starts DynamoDB Local and prints its endpoint)")
	}
	return nil
}

func setOrigins(c *Config, v string) error {
	c.AllowedOrigins = nil
	for o := range strings.SplitSeq(v, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("origin %q must start with http:// or https://, or be *", o)
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	return nil
}
