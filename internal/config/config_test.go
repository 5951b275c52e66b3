package config

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"TableName", c.TableName, "webhook-relay"},
		{"MessageTTL", c.MessageTTL, 24 * time.Hour},
		{"ReplayCount", c.ReplayCount, 5},
		{"HeartbeatInterval", c.HeartbeatInterval, 30 * time.Second},
		{"PollInterval", c.PollInterval, time.Second},
		{"HoleTimeout", c.HoleTimeout, 2 * time.Second},
		{"MaxStreamDuration", c.MaxStreamDuration, 14 * time.Minute},
		{"StreamDeadlineMargin", c.StreamDeadlineMargin, 10 * time.Second},
		{"RetryMS", c.RetryMS, 3000},
		{"MaxMessageChars", c.MaxMessageChars, 4000},
		{"MaxBodyBytes", c.MaxBodyBytes, int64(65536)},
		{"RateLimitPerMinute", c.RateLimitPerMinute, 600},
		{"SessionRateLimitPerMinute", c.SessionRateLimitPerMinute, 120},
		{"TrustProxyHeaders", c.TrustProxyHeaders, false},
		{"Port", c.Port, 3000},
		{"Host", c.Host, "127.0.0.1"},
		{"AllowedOrigins", len(c.AllowedOrigins), 0},
		{"SigningSecret", c.SigningSecret == nil, true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(Local, env(map[string]string{
		"HEARTBEAT_INTERVAL":     "1s",
		"MAX_STREAM_DURATION":    "4s",
		"RATE_LIMIT_PER_MINUTE":  "0",
		"REPLAY_COUNT":           "0",
		"STREAM_DEADLINE_MARGIN": "0s",
		"ALLOWED_ORIGINS":        "https://a.example, http://localhost:5173/",
		"WEBHOOK_SIGNING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"TRUST_PROXY_HEADERS":    "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HeartbeatInterval != time.Second || c.MaxStreamDuration != 4*time.Second || c.RateLimitPerMinute != 0 || c.ReplayCount != 0 {
		t.Fatalf("short values not taken: %+v", c)
	}
	if len(c.AllowedOrigins) != 2 || c.AllowedOrigins[1] != "http://localhost:5173" {
		t.Fatalf("AllowedOrigins = %q", c.AllowedOrigins)
	}
	if len(c.SigningSecret) == 0 || !c.TrustProxyHeaders {
		t.Fatalf("signing secret or proxy flag not parsed")
	}
}

func TestLoadRejectsNonsense(t *testing.T) {
	tests := []struct{ name, value string }{
		{"HEARTBEAT_INTERVAL", "-1s"},
		{"HEARTBEAT_INTERVAL", "0s"},
		{"HEARTBEAT_INTERVAL", "soon"},
		{"POLL_INTERVAL", "10"},
		{"MESSAGE_TTL", "-24h"},
		{"MESSAGE_TTL", "59s"},
		{"MAX_MESSAGE_CHARS", "100001"},
		{"MAX_BODY_BYTES", "409601"},
		{"STREAM_DEADLINE_MARGIN", "-1s"},
		{"REPLAY_COUNT", "-1"},
		{"REPLAY_COUNT", "five"},
		{"RATE_LIMIT_PER_MINUTE", "-5"},
		{"MAX_BODY_BYTES", "0"},
		{"MAX_MESSAGE_CHARS", "1e3"},
		{"TRUST_PROXY_HEADERS", "maybe"},
		{"ALLOWED_ORIGINS", "example.com"},
		{"WEBHOOK_SIGNING_SECRET", "not-whsec"},
		{"WEBHOOK_SIGNING_SECRET", "whsec_%%%"},
		{"PORT", "70000"},
		{"DYNAMODB_ENDPOINT", "localhost:8000"},
		{"DYNAMODB_ENDPOINT", "127.0.0.1:8000"},
		{"DYNAMODB_ENDPOINT", "ftp://localhost:8000"},
		{"DYNAMODB_ENDPOINT", "http://"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := Load(Local, env(map[string]string{tt.name: tt.value}))
			if err == nil || !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("Load error = %v, want one naming %s", err, tt.name)
			}
		})
	}
}

func TestDynamoDBEndpoint(t *testing.T) {
	tests := []struct {
		value, want string // want "reject": Load must fail
	}{
		{"", ""}, // unset: the memory store
		{"http://localhost:8000", "http://localhost:8000"},
		{"https://dynamodb.eu-west-1.amazonaws.com", "https://dynamodb.eu-west-1.amazonaws.com"},
		{"HTTP://127.0.0.1:8000", "HTTP://127.0.0.1:8000"},
		{"localhost:8000", "reject"},
		{"dynamodb.local", "reject"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Load(Local, env(map[string]string{"DYNAMODB_ENDPOINT": tt.value}))
			if tt.want == "reject" {
				if err == nil {
					t.Fatalf("DYNAMODB_ENDPOINT=%q accepted", tt.value)
				}
				// One line that names the variable and says what to do.
				msg := err.Error()
				for _, want := range []string{"DYNAMODB_ENDPOINT", "http://", "https://", "make dynamodb-local-start"} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not mention %q", msg, want)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("error %q is more than one line", msg)
				}
				return
			}
			if err != nil || c.DynamoDBEndpoint != tt.want {
				t.Fatalf("DYNAMODB_ENDPOINT=%q: endpoint %q, error %v; want %q", tt.value, c.DynamoDBEndpoint, err, tt.want)
			}
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	_, err := Load(Local, env(map[string]string{"WEBHOOK_SIGNING_SECRET": "topsecretvalue"}))
	if err == nil || strings.Contains(err.Error(), "topsecretvalue") {
		t.Fatalf("error %v leaks the secret", err)
	}
}

func TestComponentsReadOnlyTheirVariables(t *testing.T) {
	c, err := Load(Webhook, env(map[string]string{"HEARTBEAT_INTERVAL": "nonsense"}))
	if err != nil {
		t.Fatalf("webhook function parsed a stream variable: %v", err)
	}
	if c.HeartbeatInterval != 0 {
		t.Fatalf("webhook config has a heartbeat")
	}
	if _, err := Load(Stream, env(map[string]string{"HEARTBEAT_INTERVAL": "nonsense"})); err == nil {
		t.Fatalf("stream function ignored a bad HEARTBEAT_INTERVAL")
	}
}

// TestREADMEListsEveryVariable keeps the README's configuration table in step
// with the code.
func TestREADMEListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, v := range Variables() {
		def := "unset"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		row := "| `" + v.Name + "` | " + def + " |"
		if !strings.Contains(readme, row) {
			t.Errorf("README.md has no configuration row starting %q", row)
		}
	}
}

func TestWebhookSecrets(t *testing.T) {
	tests := []struct {
		value  string
		want   []string // nil with reject: Load must fail
		reject bool
	}{
		{value: "", want: nil},
		{value: "s3cret", want: []string{"s3cret"}},
		{value: "new-secret,old-secret", want: []string{"new-secret", "old-secret"}},
		{value: " new , old ", want: []string{"new", "old"}},
		{value: "new,,old,", want: []string{"new", "old"}},
		{value: ",", reject: true},
		{value: " , ,", reject: true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Load(Webhook, env(map[string]string{"WEBHOOK_SECRET": tt.value}))
			if tt.reject {
				if err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") {
					t.Fatalf("WEBHOOK_SECRET=%q: error %v, want one naming the variable", tt.value, err)
				}
				return
			}
			if err != nil || !slices.Equal(c.WebhookSecrets, tt.want) {
				t.Fatalf("WEBHOOK_SECRET=%q: secrets %q, error %v; want %q", tt.value, c.WebhookSecrets, err, tt.want)
			}
		})
	}
}

func TestLogSessionKey(t *testing.T) {
	for _, component := range []Component{Webhook, Stream, Local} {
		c, err := Load(component, env(map[string]string{"LOG_SESSION_KEY": "  k3y "}))
		if err != nil || c.LogSessionKey != "k3y" {
			t.Fatalf("component %d: LogSessionKey %q, error %v", component, c.LogSessionKey, err)
		}
	}
	if Defaults().LogSessionKey != "" {
		t.Fatal("LOG_SESSION_KEY has a default")
	}
}

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 14 * time.Minute: "14m", 30 * time.Second: "30s",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
}
