// Package clientip tells which address a request came from, for per-source
// limits on webhooks and streams.
package clientip

import (
	"net"
	"net/http"
	"strings"
)

// Source is the client address: the connection's (which the Lambda adapters
// set from API Gateway's or the function URL's source IP), or, behind a proxy
// the operator trusts, the last X-Forwarded-For entry — the one that proxy
// appended. Earlier entries are written by the client and prove nothing, so
// every header line is read and only the rightmost entry counts; when it is
// not an address, the connection's is used, never an earlier entry.
func Source(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if ip := lastForwardedFor(r.Header); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func lastForwardedFor(hd http.Header) string {
	lines := hd.Values("X-Forwarded-For")
	if len(lines) == 0 {
		return ""
	}
	all := strings.Join(lines, ",")
	last := strings.TrimSpace(all[strings.LastIndexByte(all, ',')+1:])
	if host, _, err := net.SplitHostPort(last); err == nil {
		last = host // a proxy that appends the port too
	}
	if ip := net.ParseIP(last); ip != nil {
		return ip.String()
	}
	return ""
}
