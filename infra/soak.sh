#!/usr/bin/env bash
# The body of `make soak` (not part of `make test`): the local adapter under a long,
# steady load with clients that drop and resume at random. 1000 streams over 100
# sessions, 100 messages/s (a fifth of them broadcasts), for 10 minutes; every stream
# drops its connection after a random time (mean 60 s) and resumes with the Last-Event-ID
# of the last event it consumed, as EventSource does; the relay also ends every stream by
# plan after MAX_STREAM_DURATION (2 min here), and the client reconnects after the
# retry: delay. Prints a progress line (published, delivered, pending, server RSS and
# threads, open streams from the health endpoint) every 30 s, then lost / duplicated /
# misrouted (must be 0), whether the server's RSS levelled off, and whether every lease
# was released. Exit status 0 only when all of that holds.
#
#   infra/soak.sh                      # 10 minutes
#   SOAK_DURATION=1m infra/soak.sh     # a smoke run
#
# Environment: SOAK_DURATION [10m], SOAK_STREAMS [1000], SOAK_SESSIONS [100],
# SOAK_RATE [100], SOAK_BROADCAST_RATIO [0.2], SOAK_RECONNECT_MEAN [60s],
# SOAK_PROGRESS [30s, or 10s when SOAK_DURATION is under 5m], SOAK_MAX_STREAM_DURATION [2m],
# SOAK_JSON (keep the JSON result in this file).
# Goroutines are not exported by the relay; the server's thread count and RSS from /proc
# stand in for them, and open streams come from GET /api/webhook (activeConnections).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${SOAK_DURATION:-10m}"
STREAMS="${SOAK_STREAMS:-1000}"
SESSIONS="${SOAK_SESSIONS:-100}"
RATE="${SOAK_RATE:-100}"
BCAST="${SOAK_BROADCAST_RATIO:-0.2}"
RECONNECT="${SOAK_RECONNECT_MEAN:-60s}"
MAXSTREAM="${SOAK_MAX_STREAM_DURATION:-2m}"
default_progress=30s
case "$DURATION" in
*s | [1-4]m) default_progress=10s ;;
esac
PROGRESS="${SOAK_PROGRESS:-$default_progress}"

log() { printf 'soak: %s\n' "$*" >&2; }
die() {
	printf 'soak: ERROR: %s\n' "$*" >&2
	exit 1
}

export AWS_EC2_METADATA_DISABLED=true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-soak.XXXXXX")"
# shellcheck source=infra/relay.sh
. "$ROOT/infra/relay.sh"
cleanup() {
	local rc=$?
	relay_stop
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building"
mkdir -p build/host
go build -o build/host/local ./local
go build -o build/host/loadgen ./tools/loadgen

# MESSAGE_TTL 5m: long enough for every resume, short enough that the memory store's
# retention levels off within the run, so RSS growth would mean a leak.
relay_start "$tmp/relay" "$ROOT/build/host/local" RATE_LIMIT_PER_MINUTE=0 SESSION_RATE_LIMIT_PER_MINUTE=0 MAX_STREAMS_PER_IP=0 \
	MESSAGE_TTL=5m MAX_STREAM_DURATION="$MAXSTREAM" || die "the local adapter did not start"
url="$RELAY_URL"
log "relay pid $RELAY_PID at $url; $STREAMS streams over $SESSIONS sessions, $RATE msg/s, $DURATION, reconnect mean $RECONNECT, MAX_STREAM_DURATION $MAXSTREAM"

json="${SOAK_JSON:-$tmp/soak.json}"
rc=0
build/host/loadgen -label soak -target "$url" -server-pid "$RELAY_PID" \
	-subscribers "$STREAMS" -sessions "$SESSIONS" -broadcast-ratio "$BCAST" -rate "$RATE" -concurrency 8 \
	-duration "$DURATION" -drain 20s -reconnect-mean "$RECONNECT" -progress "$PROGRESS" -json "$json" || rc=$?
if [[ $rc -ne 0 ]]; then
	log "FAIL: loadgen exit $rc (3: a check failed; see above)"
fi

# Every stream is closed now: every lease must be gone.
active=""
for ((i = 0; i < 50; i++)); do
	active="$(curl -s --noproxy '*' --max-time 2 "$url/api/webhook" | grep -o '"activeConnections":[0-9]*' | grep -o '[0-9]*$' || true)"
	[[ "$active" == 0 ]] && break
	sleep 0.2
done
if [[ "$active" != 0 ]]; then
	log "FAIL: $active leases left after every stream closed"
	rc=1
else
	log "leases after close: 0"
fi
if [[ -f "$json" ]] && grep -q '"plateau": false' "$json"; then
	log "FAIL: server RSS kept growing (see the progress lines)"
	rc=1
fi
threads="$(grep Threads "/proc/$RELAY_PID/status" | grep -o '[0-9]*' || echo '?')"
log "server threads after the run: $threads"
if [[ $rc -eq 0 ]]; then
	log "PASS"
fi
exit "$rc"
