#!/usr/bin/env bash
# The body of `make cost`: what chat windows cost on AWS, before and after the close
# beacon and the pause of hidden windows. Builds the real stream and webhook bootstraps
# for this machine, starts an in-memory DynamoDB Local on a free port and two counting
# proxies in front of it (one per function), and runs tools/costrun, which plays a
# scripted mix of chat windows in compressed time under tools/lambdaemu and writes the
# before/after table into docs/cost.md. Everything runs on 127.0.0.1; every server
# started here is stopped by its pid when the script ends, also on failure or Ctrl-C.
#
#   infra/cost.sh                      # both modes, about 3.5 minutes on 2 CPUs; updates docs/cost.md
#   COST_SMOKE=1 infra/cost.sh         # a quick check of the harness (under a minute), no docs
#   COST_MODES=before infra/cost.sh    # one mode only
#
# Environment (defaults in brackets):
#   COST_MODES     modes to run [before,after]
#   COST_SMOKE     1: 10 windows compressed 120x, nothing written to the docs [0]
#   COST_ARGS      more flags for tools/costrun (-windows, -compress, -poll, -rate, -seed)
#   COST_OUT       the page the report goes into [docs/cost.md]; empty: none
#   COST_RESULTS   keep <mode>.json and the functions' logs here [build/cost]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS

MODES="${COST_MODES:-before,after}"
SMOKE="${COST_SMOKE:-0}"
OUT="${COST_OUT-docs/cost.md}"
RES="${COST_RESULTS:-$ROOT/build/cost}"

log() { printf 'cost: %s\n' "$*" >&2; }
die() {
	printf 'cost: ERROR: %s\n' "$*" >&2
	exit 1
}

# Never real AWS: dummy credentials for DynamoDB Local, no instance-metadata probing.
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=dummy
export AWS_SECRET_ACCESS_KEY=dummy
export AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE

tmp="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-cost.XXXXXX")"
PROXY_PIDS=()
DDB_STATE=""
cleanup() {
	local rc=$? pid
	for pid in "${PROXY_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n "$DDB_STATE" ]]; then
		DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
	if [[ $rc -eq 0 ]]; then
		log "done in $((SECONDS - started))s"
	else
		log "FAILED (exit $rc) after $((SECONDS - started))s"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The flags of `make build` (lambda.norpc, static, stripped), for this machine.
BIN="$ROOT/build/host/cost"
log "building the bootstraps, the counting proxy and the harness into $BIN"
mkdir -p "$BIN/stream" "$BIN/webhook"
export CGO_ENABLED=0
go build -tags lambda.norpc -trimpath -ldflags="-s -w" -o "$BIN/stream/bootstrap" ./functions/stream
go build -tags lambda.norpc -trimpath -ldflags="-s -w" -o "$BIN/webhook/bootstrap" ./functions/webhook
go build -o "$BIN/loadgen" ./tools/loadgen
go build -o "$BIN/costrun" ./tools/costrun

log "starting DynamoDB Local (in memory)"
DDB_STATE="$tmp/dynamodb-local"
ddb="$(DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh start --watch-pid $$)"

# start_proxy NAME: a counting proxy in front of DynamoDB Local; sets PROXY_URL.
start_proxy() {
	local name="$1" i
	"$BIN/loadgen" -ddb-proxy "$ddb" >"$tmp/proxy-$name.out" 2>&1 &
	PROXY_PIDS+=($!)
	PROXY_URL=""
	for ((i = 0; i < 100; i++)); do
		PROXY_URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/proxy-$name.out" 2>/dev/null | head -n 1 || true)"
		[[ -n "$PROXY_URL" ]] && return 0
		sleep 0.1
	done
	die "the counting proxy ($name) did not start: $(cat "$tmp/proxy-$name.out")"
}
start_proxy stream
stream_proxy="$PROXY_URL"
start_proxy webhook
webhook_proxy="$PROXY_URL"
log "DynamoDB Local at $ddb; the stream function counted through $stream_proxy, the webhook function through $webhook_proxy"

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
	commit+=" (with uncommitted changes)"
fi
args=(-stream "$BIN/stream/bootstrap" -webhook "$BIN/webhook/bootstrap"
	-ddb "$ddb" -stream-proxy "$stream_proxy" -webhook-proxy "$webhook_proxy"
	-modes "$MODES" -results "$RES" -commit "$commit")
if [[ "$SMOKE" == 1 ]]; then
	args+=(-smoke)
elif [[ -n "$OUT" ]]; then
	args+=(-doc "$OUT")
fi
# shellcheck disable=SC2206 # COST_ARGS is a list of flags
args+=(${COST_ARGS:-})
"$BIN/costrun" "${args[@]}"
