# Sourced by the scripts that load a running relay (bench.sh, soak.sh): start the built
# local adapter in the background and stop it again, by its pid.
#
#   relay_start DIR BIN [VAR=VALUE...]   run BIN in DIR (no .env file of the checkout
#       applies) on a free 127.0.0.1 port, with the variables given, stdout in DIR/stdout
#       and stderr (its JSON log) in $RELAY_STDERR (default DIR/stderr); wait up to
#       $RELAY_START_WAIT seconds (default 30; a relay on DynamoDB creates its table
#       first) for its "listening on" line. Sets RELAY_PID and RELAY_URL; returns 1 (with
#       the end of its stderr) if it did not start.
#   relay_stop   SIGTERM, up to 10 s for the shutdown grace, then SIGKILL; clears RELAY_PID.
#   run_cleanup  the EXIT trap of a load run (bench.sh, reliability.sh): stops the relay,
#       the proxy of PROXY_PID and the DynamoDB Local of DDB_STATE, removes $tmp, and logs
#       the outcome with the script's log, $OUT and $started.

RELAY_PID=""
RELAY_URL=""
PROXY_PID=""
DDB_STATE=""

relay_start() {
	local dir="$1" bin="$2"
	shift 2
	local stderr="${RELAY_STDERR:-$dir/stderr}"
	mkdir -p "$dir"
	(cd "$dir" && exec env PORT=0 HOST=127.0.0.1 "$@" "$bin" >"$dir/stdout" 2>"$stderr") &
	RELAY_PID=$!
	local i port=""
	for ((i = 0; i < ${RELAY_START_WAIT:-30} * 10; i++)); do
		port="$(grep -o 'listening on http://[^:]*:[0-9]*' "$dir/stdout" 2>/dev/null | grep -o '[0-9]*$' || true)"
		[[ -n "$port" ]] && break
		kill -0 "$RELAY_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z "$port" ]]; then
		tail -n 20 "$stderr" >&2 || true
		return 1
	fi
	RELAY_URL="http://127.0.0.1:$port"
}

relay_stop() {
	[[ -n "$RELAY_PID" ]] || return 0
	kill -TERM "$RELAY_PID" 2>/dev/null || true
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$RELAY_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$RELAY_PID" 2>/dev/null || true
	wait "$RELAY_PID" 2>/dev/null || true
	RELAY_PID=""
}

run_cleanup() {
	local rc=$?
	relay_stop
	if [[ -n "$PROXY_PID" ]]; then
		kill -TERM "$PROXY_PID" 2>/dev/null || true
		wait "$PROXY_PID" 2>/dev/null || true
	fi
	if [[ -n "$DDB_STATE" ]]; then
		DYNAMODB_LOCAL_STATE="$DDB_STATE" bash infra/dynamodb-local.sh stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
	if [[ $rc -eq 0 ]]; then
		log "done in $((SECONDS - started))s: $OUT"
	else
		log "FAILED (exit $rc) after $((SECONDS - started))s"
	fi
	exit "$rc"
}
