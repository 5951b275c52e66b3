package clientip

import (
	"net/http/httptest"
	"testing"
)

func TestSource(t *testing.T) {
	tests := []struct {
		name   string
		trust  bool
		xff    []string
		remote string
		want   string
	}{
		{"peer", false, nil, "192.0.2.7:5000", "192.0.2.7"},
		{"untrusted header ignored", false, []string{"203.0.113.9"}, "192.0.2.7:5000", "192.0.2.7"},
		{"the proxy's entry is the last", true, []string{"198.51.100.1, 203.0.113.9"}, "10.0.0.1:80", "203.0.113.9"},
		{"a client-written first entry does not count", true, []string{"1.2.3.4, 5.6.7.8, 203.0.113.9"}, "10.0.0.1:80", "203.0.113.9"},
		{"every header line is read", true, []string{"1.2.3.4", "203.0.113.9"}, "10.0.0.1:80", "203.0.113.9"},
		{"IPv6", true, []string{"2001:db8::1"}, "10.0.0.1:80", "2001:db8::1"},
		{"empty last entry: the peer, not an earlier one", true, []string{"203.0.113.9, "}, "10.0.0.1:80", "10.0.0.1"},
		{"a proxy that appends the port", true, []string{"1.2.3.4, 203.0.113.9:4711"}, "10.0.0.1:80", "203.0.113.9"},
		{"malformed last entry: the peer", true, []string{"203.0.113.9, garbage"}, "10.0.0.1:80", "10.0.0.1"},
		{"no header: the peer", true, nil, "10.0.0.1:80", "10.0.0.1"},
		{"remote without port", false, nil, "192.0.2.7", "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := Source(r, tt.trust); got != tt.want {
				t.Fatalf("Source = %q, want %q", got, tt.want)
			}
		})
	}
}
