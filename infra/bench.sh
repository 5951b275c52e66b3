#!/usr/bin/env bash
# The body of `make bench`: build the local adapter and the load generator, run T1-T5
# (the tests and targets docs/benchmarks.md states) against the relay, against loadgen's
# built-in floor server and against Centrifugo (pinned, installed into the tool cache by
# infra/centrifugo.sh), back to back, and write docs/benchmarks.md. Everything runs on
# 127.0.0.1; every server started here is stopped by its pid when the script ends, also on
# failure or Ctrl-C.
#
#   infra/bench.sh                     # the published set, about 15 minutes
#   BENCH_QUICK=1 infra/bench.sh       # a quick pass (about 3 minutes), marked as such
#   BENCH_ONLY="t1 t4" infra/bench.sh  # only some tests (t1 t2 t3 t4 t5; t5k: only T5's reads per poll)
#
# Environment (defaults in brackets; BENCH_QUICK=1 changes the marked ones):
#   BENCH_DURATION        publishing time of T1-T3 [20s; quick 4s]
#   BENCH_T5_DURATION     publishing time of T5 [10s; quick: BENCH_DURATION]
#   BENCH_REPEAT          runs per test and server, the order of relay/floor/Centrifugo
#                         rotating [3; quick 1]
#   BENCH_CENTRIFUGO      1: Centrifugo is the third server of T1-T4; 0: relay and floor only [1]
#   BENCH_T4_SUBSCRIBERS  idle connections in T4 [10000; quick 2000]
#   BENCH_T5_SUBSCRIBERS  streams in T5 [50]; the T2 shape sends S/10 msg/s to broadcast,
#                         the T3 shape S/2 msg/s over S sessions. Not 1000: DynamoDB Local
#                         (one JVM on this machine) saturates near 1000 requests/s, and
#                         1000 streams polling every 200 ms would ask 10000/s.
#   BENCH_T5_IDLE         idle phase of T5, to count polling per stream-minute [30s; quick 10s]
#                         (30s = one HEARTBEAT_INTERVAL, so lease renewals count in full)
#   BENCH_T5_POLLS        T5's reads per poll: k = 1, 10, 100 streams on one relay process
#                         (all broadcast-only, then all on one session), idle for this many
#                         1 s poll intervals while their Queries are counted [10; quick 5]
#   BENCH_ONLY            tests to run [t1 t2 t3 t4 t5]
#   BENCH_OUT             the report [docs/benchmarks.md]
#   BENCH_RESULTS         keep the JSON results in this directory [a temp dir, removed]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS

QUICK="${BENCH_QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
	D="${BENCH_DURATION:-4s}"
	REPEAT="${BENCH_REPEAT:-1}"
	T4S="${BENCH_T4_SUBSCRIBERS:-2000}"
	T5IDLE="${BENCH_T5_IDLE:-10s}"
	T5POLLS="${BENCH_T5_POLLS:-5}"
	T5D="${BENCH_T5_DURATION:-$D}"
else
	D="${BENCH_DURATION:-20s}"
	REPEAT="${BENCH_REPEAT:-3}"
	T4S="${BENCH_T4_SUBSCRIBERS:-10000}"
	T5IDLE="${BENCH_T5_IDLE:-30s}"
	T5POLLS="${BENCH_T5_POLLS:-10}"
	T5D="${BENCH_T5_DURATION:-10s}"
fi
T5S="${BENCH_T5_SUBSCRIBERS:-50}"
CENTRIFUGO="${BENCH_CENTRIFUGO:-1}"
ONLY=" ${BENCH_ONLY:-t1 t2 t3 t4 t5} "
OUT="${BENCH_OUT:-docs/benchmarks.md}"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: ERROR: %s\n' "$*" >&2
	exit 1
}
want() { [[ "$ONLY" == *" $1 "* ]]; }

# Never real AWS: dummy credentials for DynamoDB Local, no instance-metadata probing.
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-dummy}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-dummy}"
export AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

# 10000 connections need 10000+ descriptors in the relay and in the generator: raise the
# soft limit to the hard one for everything started below (Go raises its own soft limit
# at start-up as well; the generator checks and reports it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if want t4 && (($(ulimit -n) < T4S + 200)); then
	die "T4 needs about $((T4S + 200)) open files per process but the limit is $(ulimit -n) (hard $(ulimit -Hn)); set BENCH_T4_SUBSCRIBERS lower"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-bench.XXXXXX")"
RES="${BENCH_RESULTS:-$tmp/results}"
mkdir -p "$RES"
# shellcheck source=infra/relay.sh
. "$ROOT/infra/relay.sh"
trap run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building the local adapter and the load generator"
mkdir -p build/host
go build -o build/host/local ./local
go build -o build/host/loadgen ./tools/loadgen
LOCAL="$ROOT/build/host/local"
LOADGEN="$ROOT/build/host/loadgen"
KINDS=(relay floor)
CF_BIN=""
if [[ "$CENTRIFUGO" == 1 ]] && { want t1 || want t2 || want t3 || want t4; }; then
	CF_BIN="$(bash infra/centrifugo.sh install)" || die "could not install Centrifugo (BENCH_CENTRIFUGO=0 runs without it)"
	KINDS+=(centrifugo)
fi

# start_relay NAME [VAR=VALUE...]: the local adapter without rate limits or replay (and
# with the variables given) in a directory of its own; sets RELAY_PID and RELAY_URL.
start_relay() {
	local name="$1"
	shift
	relay_start "$tmp/relay-$name" "$LOCAL" RATE_LIMIT_PER_MINUTE=0 SESSION_RATE_LIMIT_PER_MINUTE=0 MAX_STREAMS_PER_IP=0 REPLAY_COUNT=0 "$@" ||
		die "the local adapter ($name) did not start"
}

# loadgen_run FILE ARGS...: one run; exit status 3 (a check failed) still leaves FILE.
loadgen_run() {
	local file="$1"
	shift
	local rc=0
	"$LOADGEN" -quiet -json "$file" "$@" >/dev/null || rc=$?
	if [[ $rc -ne 0 && $rc -ne 3 ]]; then
		log "loadgen failed (exit $rc): $*"
	elif [[ $rc -eq 3 ]]; then
		log "checks failed in $(basename "$file") (see the report)"
	fi
}

# servers TEST REP ARGS...: the relay, the floor and Centrifugo, back to back, their
# order rotating with REP so that none always runs first or last.
servers() {
	local test="$1" rep="$2"
	shift 2
	local i kind n=${#KINDS[@]}
	for ((i = 0; i < n; i++)); do
		kind="${KINDS[$(((i + rep - 1) % n))]}"
		log "$test #$rep $kind: $*"
		case "$kind" in
		relay)
			start_relay "$test-$rep"
			loadgen_run "$RES/${test}__relay__$rep.json" -label "$test relay" -target "$RELAY_URL" -server-pid "$RELAY_PID" "$@"
			relay_stop
			;;
		floor) loadgen_run "$RES/${test}__floor__$rep.json" -label "$test floor" -floor "$@" ;;
		centrifugo) loadgen_run "$RES/${test}__centrifugo__$rep.json" -label "$test centrifugo" -centrifugo "$CF_BIN" "$@" ;;
		esac
	done
}

{
	echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
	echo "nproc=$(nproc)"
	echo "go_version=$(go version)"
	echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo ' (with uncommitted changes)')"
	echo "quick=$QUICK"
	echo "repeat=$REPEAT"
	echo "duration=$D"
	[[ -n "$CF_BIN" ]] && echo "centrifugo=$(bash infra/centrifugo.sh version)"
	true
} >"$RES/meta.txt"

for ((rep = 1; rep <= REPEAT; rep++)); do
	want t1 && servers t1 "$rep" -subscribers 100 -rate 0 -concurrency 16 -duration "$D"
	want t2 && servers t2 "$rep" -subscribers 1000 -rate 50 -duration "$D"
	want t3 && servers t3 "$rep" -subscribers 1000 -sessions 1000 -rate 500 -duration "$D"
	want t4 && servers t4 "$rep" -subscribers "$T4S" -idle -settle 3s
done

if want t5 || want t5k; then
	log "starting DynamoDB Local"
	DDB_STATE="$tmp/dynamodb-local"
	ddb="$(DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh start --watch-pid $$)"
	"$LOADGEN" -ddb-proxy "$ddb" >"$tmp/proxy.out" 2>&1 &
	PROXY_PID=$!
	proxy=""
	for ((i = 0; i < 100; i++)); do
		proxy="$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/proxy.out" 2>/dev/null || true)"
		[[ -n "$proxy" ]] && break
		sleep 0.1
	done
	[[ -n "$proxy" ]] || die "the counting proxy did not start"
	log "DynamoDB Local at $ddb, counted through $proxy"
	want t5 && for poll in 1s 200ms; do
		for shape in t2 t3; do
			args=(-subscribers "$T5S" -rate $((T5S / 10)))
			[[ "$shape" == t3 ]] && args=(-subscribers "$T5S" -sessions "$T5S" -rate $((T5S / 2)))
			test="t5-$shape-$poll"
			log "$test: ${args[*]} (idle phase $T5IDLE)"
			start_relay "$test" DYNAMODB_ENDPOINT="$proxy" POLL_INTERVAL="$poll" TABLE_NAME="bench-$shape-${poll}" \
				RATE_LIMIT_PER_MINUTE=100000000 SESSION_RATE_LIMIT_PER_MINUTE=100000000 MAX_STREAMS_PER_IP=0
			loadgen_run "$RES/${test}__relay__1.json" -label "$test" -target "$RELAY_URL" -server-pid "$RELAY_PID" \
				"${args[@]}" -concurrency 32 -duration "$T5D" -idle-phase "$T5IDLE" -idempotency -drain 15s \
				-ddb-counts "$proxy/__loadgen/counts"
			relay_stop
		done
	done
	# Reads per poll: k streams of one relay process, idle, while their Queries are
	# counted. One reader per partition per process reads each partition once per poll
	# interval whatever k; each stream reading its own partitions reads k times.
	for shape in broadcast session; do
		for k in 1 10 100; do
			args=(-subscribers "$k")
			[[ "$shape" == session ]] && args+=(-sessions 1)
			test="t5k-$shape-$k"
			log "$test: ${args[*]} idle for $T5POLLS polls of 1s"
			start_relay "$test" DYNAMODB_ENDPOINT="$proxy" POLL_INTERVAL=1s TABLE_NAME=bench-reads
			loadgen_run "$RES/${test}__relay__1.json" -label "$test" -target "$RELAY_URL" -server-pid "$RELAY_PID" \
				"${args[@]}" -idle -settle "${T5POLLS}s" -poll-interval 1s -ddb-counts "$proxy/__loadgen/counts"
			relay_stop
		done
	done
fi

echo "loadavg_end=$(cut -d' ' -f1 /proc/loadavg)" >>"$RES/meta.txt"
echo "finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$RES/meta.txt"
"$LOADGEN" -report "$RES" -out "$OUT"
log "wrote $OUT"
