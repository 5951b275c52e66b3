#!/usr/bin/env bash
# The body of `make reliability` (not part of `make test`): the relay's delivery promises,
# measured, written to docs/reliability.md. Three runs, one after the other:
#
#   1. soak: the local adapter on its memory store, 1000 streams over 200 sessions, 1000 msg/s
#      for 110 s (over 100,000 accepted messages), every stream dropping and resuming with
#      Last-Event-ID at random (mean 20 s) and ended by plan every 45 s; rate limits off.
#   2. fault: the local adapter on DynamoDB Local behind loadgen's fault proxy (ddbfault):
#      10 s clear, then a throttling storm (weather) for 90 s with a 10 s outage (every
#      request refused) in the middle of it; 100 streams over 20 sessions with random
#      resumes, HEARTBEAT_INTERVAL=2s, 250 msg/s offered by 128 correct senders.
#   3. mem: the local adapter's RSS before and after 50,000 messages to 50,000 sessions and
#      3000 stream opens on random sessions, after MESSAGE_TTL=1m and a sweep, at +0..360 s.
#
# Publishers are correct senders (loadgen -sender): 503 -> retry with a new Idempotency-Key,
# 504 / 500 / no answer -> retry with the same key, 429 -> wait Retry-After. Lost, duplicated,
# misrouted, 503-but-delivered and 500s must all be 0; the script exits non-zero when one is
# not (or when a run falls short of its size: 100,000 / 10,000 accepted messages), after
# writing the report. Everything runs on 127.0.0.1 with dummy AWS credentials; every process
# started here (relays, the fault proxy, DynamoDB Local) is stopped by its pid at the end.
# About 13 minutes (the memory run waits out the TTL and then 6 minutes of RSS samples).
#
#   infra/reliability.sh
#   RELIABILITY_ONLY="soak" infra/reliability.sh     # some runs only (soak fault mem)
#
# Environment: RELIABILITY_ONLY [soak fault mem], RELIABILITY_OUT [docs/reliability.md],
# RELIABILITY_RESULTS (keep the JSON results and relay logs in this directory),
# REL_SOAK_DURATION [110s], REL_SOAK_RATE [1000], REL_FAULT_RATE [250],
# REL_FAULT_SCHEDULE [clear@0s,weather@10s,outage@50s,weather@60s,clear@100s],
# REL_FAULT_DURATION [100s], REL_MEM_MESSAGES [50000], REL_MEM_OPENS [3000].
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS

ONLY=" ${RELIABILITY_ONLY:-soak fault mem} "
OUT="${RELIABILITY_OUT:-docs/reliability.md}"
SOAK_DURATION="${REL_SOAK_DURATION:-110s}"
SOAK_RATE="${REL_SOAK_RATE:-1000}"
FAULT_RATE="${REL_FAULT_RATE:-250}"
FAULT_DURATION="${REL_FAULT_DURATION:-100s}"
FAULT_SCHEDULE="${REL_FAULT_SCHEDULE:-clear@0s,weather@10s,outage@50s,weather@60s,clear@100s}"
MEM_MESSAGES="${REL_MEM_MESSAGES:-50000}"
MEM_OPENS="${REL_MEM_OPENS:-3000}"

log() { printf 'reliability: %s\n' "$*" >&2; }
die() {
	printf 'reliability: ERROR: %s\n' "$*" >&2
	exit 1
}
want() { [[ "$ONLY" == *" $1 "* ]]; }

# Never real AWS: dummy static credentials for DynamoDB Local, no instance metadata, no
# profile or endpoint from the caller's environment.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=dummy
export AWS_SECRET_ACCESS_KEY=dummy
export AWS_REGION=us-east-1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-reliability.XXXXXX")"
RES="${RELIABILITY_RESULTS:-$tmp/results}"
mkdir -p "$RES"
rm -f "$RES"/{soak,fault,mem}.json "$RES"/*-relay.log "$RES/meta.txt"
# shellcheck source=infra/relay.sh
. infra/relay.sh
trap run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

meta() { printf '%s=%s\n' "$1" "$2" >>"$RES/meta.txt"; }

log "building the local adapter and the load generator"
go build -o "$tmp/bin/local" ./local
go build -o "$tmp/bin/loadgen" ./tools/loadgen
LOCAL="$tmp/bin/local"
LOADGEN="$tmp/bin/loadgen"

meta started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta runs "$ONLY"
meta loadavg_start "$(cut -d' ' -f1 /proc/loadavg)"
meta nproc "$(nproc)"
meta go_version "$(go version)"
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo ' (the tree had uncommitted changes)')"

# start_relay NAME [VAR=VALUE...]: the local adapter on a free 127.0.0.1 port, in a
# directory of its own, its JSON log in $RES/NAME-relay.log (infra/relay.sh).
start_relay() {
	local name="$1"
	shift
	meta "${name}_relay_env" "MAX_STREAMS_PER_IP=0 $*"
	# Every stream of a run comes from 127.0.0.1: no cap on streams per address.
	RELAY_STDERR="$RES/$name-relay.log" RELAY_START_WAIT=60 \
		relay_start "$tmp/relay-$name" "$LOCAL" MAX_STREAMS_PER_IP=0 "$@" ||
		die "the local adapter ($name) did not start"
	log "$name: relay pid $RELAY_PID at $RELAY_URL ($*)"
}

# leases_after NAME: every stream is closed now: the relay's activeConnections must be 0.
leases_after() {
	local active="" i
	for ((i = 0; i < 100; i++)); do # 20 s: a DynamoDB lease release may be held in retries
		active="$(curl -s --noproxy '*' --max-time 2 "$RELAY_URL/api/webhook" | grep -o '"activeConnections":[0-9]*' | grep -o '[0-9]*$' || true)"
		[[ "$active" == 0 ]] && break
		sleep 0.2
	done
	meta "$1_leases_after" "${active:-unknown}"
	log "$1: leases after every stream closed: ${active:-unknown}"
}

# run_loadgen NAME ARGS...: one run, timed; exit 3 (a check failed) still leaves the JSON.
run_loadgen() {
	local name="$1"
	shift
	meta "${name}_cmd" "loadgen $(printf '%q ' "$@" | sed 's/ $//')"
	local t0=$SECONDS rc=0
	"$LOADGEN" "$@" || rc=$?
	meta "${name}_s" "$((SECONDS - t0))"
	if [[ $rc -eq 3 ]]; then
		log "$name: CHECKS FAILED (see above; the report has the figures)"
	elif [[ $rc -ne 0 ]]; then
		log "$name: loadgen failed (exit $rc)"
	fi
}

if want soak; then
	start_relay soak RATE_LIMIT_PER_MINUTE=0 SESSION_RATE_LIMIT_PER_MINUTE=0 MESSAGE_TTL=5m \
		MAX_STREAM_DURATION=45s HEARTBEAT_INTERVAL=5s
	run_loadgen soak -label soak -target "$RELAY_URL" -server-pid "$RELAY_PID" -sender \
		-subscribers 1000 -sessions 200 -broadcast-ratio 0.01 -rate "$SOAK_RATE" -concurrency 16 \
		-duration "$SOAK_DURATION" -drain 30s -reconnect-mean 20s -progress 10s -json "$RES/soak.json"
	leases_after soak
	relay_stop
fi

if want fault; then
	log "starting DynamoDB Local"
	DDB_STATE="$tmp/dynamodb-local"
	ddb="$(DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh start --watch-pid $$)"
	meta ddb_local_cmd "DYNAMODB_LOCAL_STATE=<temp dir> bash infra/dynamodb-local.sh start --watch-pid <this script>   # -> $ddb"
	"$LOADGEN" -fault-proxy "$ddb" -fault-seed 1 >"$tmp/proxy.out" 2>&1 &
	PROXY_PID=$!
	proxy=""
	for ((i = 0; i < 100; i++)); do
		proxy="$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/proxy.out" 2>/dev/null | head -n 1 || true)"
		[[ -n "$proxy" ]] && break
		sleep 0.1
	done
	[[ -n "$proxy" ]] || die "the fault proxy did not start: $(cat "$tmp/proxy.out")"
	meta fault_proxy_cmd "loadgen -fault-proxy $ddb -fault-seed 1 &   # -> $proxy"
	log "DynamoDB Local at $ddb, behind the fault proxy at $proxy"
	# Rate limits on but out of reach: their counters are DynamoDB writes, and meet the faults too.
	start_relay fault DYNAMODB_ENDPOINT="$proxy" TABLE_NAME="reliability-$$" HEARTBEAT_INTERVAL=2s \
		RATE_LIMIT_PER_MINUTE=100000000 SESSION_RATE_LIMIT_PER_MINUTE=100000000
	run_loadgen fault -label fault -target "$RELAY_URL" -server-pid "$RELAY_PID" -sender -retry-for 2m \
		-subscribers 100 -sessions 20 -broadcast-ratio 0.05 -rate "$FAULT_RATE" -concurrency 128 \
		-duration "$FAULT_DURATION" -drain 60s -reconnect-mean 20s -progress 10s \
		-fault-control "$proxy" -fault-schedule "$FAULT_SCHEDULE" -fault-held-for 3s -json "$RES/fault.json"
	leases_after fault
	relay_stop
	kill -TERM "$PROXY_PID" 2>/dev/null || true
	wait "$PROXY_PID" 2>/dev/null || true
	PROXY_PID=""
	DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh stop >/dev/null 2>&1 || true
	DDB_STATE=""
fi

if want mem; then
	# GODEBUG=gctrace=1 prints one line per GC to the log; it changes nothing else.
	start_relay mem RATE_LIMIT_PER_MINUTE=0 SESSION_RATE_LIMIT_PER_MINUTE=0 MESSAGE_TTL=1m GODEBUG=gctrace=1
	sleep 2
	run_loadgen mem -label mem -target "$RELAY_URL" -server-pid "$RELAY_PID" -concurrency 16 \
		-mem-messages "$MEM_MESSAGES" -mem-opens "$MEM_OPENS" -mem-ttl 1m -mem-samples 0s,30s,60s,120s,180s,240s,300s,360s \
		-json "$RES/mem.json"
	relay_stop
fi

meta loadavg_end "$(cut -d' ' -f1 /proc/loadavg)"
meta finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta total_s "$((SECONDS - started))"
rc=0
"$LOADGEN" -reliability-report "$RES" -out "$OUT" || rc=$?
if [[ $rc -ne 0 ]]; then
	log "a must-be-zero figure is not 0, or a run fell short (report: $OUT)"
	exit 1
fi
log "all must-be-zero figures are 0: $OUT"
