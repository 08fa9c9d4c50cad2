# troop_chain.sh - the shell tests' and benchmarks' harness (the C tests
# have the same in harness.c): sourced, it starts a whole troop on loopback
# (coordinators, engine simulators, workers, `troop up`) and the private
# PostgreSQL + Redis of tests/pg, each process on 127.0.0.1:0 with its own
# TROOP_HOME and log under $CHAIN_TMP, learns the ports they bound from
# their logs, and on exit stops everything it started and removes
# $CHAIN_TMP (keys and ledgers with it; kept after a failure or with
# CHAIN_KEEP=1).
#
#   chain_init                     temp dir, exit trap (call first)
#   chain_coordinator [ARGS...]    sets COORD_URL, COORD_PORT, COORD_PID,
#                                  COORD_LOG, COORD_DIR
#   chain_coordinator_bg [ARGS...] starts one without waiting: COORD_PID,
#                                  COORD_LOG, COORD_DIR; then chain_wait_port
#   chain_sim NAME [ARGS...]       sets SIM_PORT, SIM_PID
#   chain_worker NAME ENGINE_URL [ARGS...]   sets WORKER_PORT, WORKER_PID
#                                  (ENGINE_URL "": the engines are in ARGS)
#   chain_up NAME COORD_URL [ARGS...]        sets UP_PORT, UP_URL, UP_PID
#   chain_wait_port LOG MARKER PID echo the port=N of LOG's MARKER line
#   chain_wait_nodes MODEL N       until N live nodes serve MODEL
#   chain_spawn LOG HOME CMD...    any command, tracked (CHAIN_PID)
#   chain_free_port, chain_wait_http URL: for processes that log below info
#                                  level (benchmarks): a port chosen before,
#                                  readiness by HTTP
#   chain_services NAME            a private PostgreSQL and Redis (stopped at
#                                  exit, after the processes): DATABASE_URL,
#                                  REDIS_URL, SVC_DIR
#   chain_at_exit COMMAND          run COMMAND (eval) at exit, before the rest
#   chain_fail MESSAGE             print and count a failure
#   chain_stop PID                 SIGTERM, SIGKILL after 10 s, reap
#   chain_stop_clean PID LOG NAME  SIGTERM; it must exit 0 with no
#                                  sanitizer report in its log
#
# What the starters read: CHAIN_WRAP, a command prefix (word-split) for
# the process started, e.g. "prlimit --nofile=2048:2048 --" or perf;
# CHAIN_VERIFY=1, a coordinator without --allow-unverified; CLIENT_HOME,
# `troop up`'s and chain_troop's TROOP_HOME; WORKER_HOME, a worker's
# TROOP_HOME (default $CHAIN_TMP/home-worker-NAME).  Needs TROOP_BIN and
# TROOP_BUILD_DIR (ctest sets both; default build/).

BUILD=${TROOP_BUILD_DIR:-build}
TROOP=${TROOP_BIN:-$BUILD/troop}
SIM=$BUILD/engine-sim
CHAIN_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHAIN_PIDS=()
CHAIN_FAILS=0
CHAIN_EXIT=()
CHAIN_TMP=

# (Every function here also runs under set -euo pipefail: the benchmarks.)
chain_stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

chain_cleanup() {
	local p i
	for ((i = ${#CHAIN_EXIT[@]} - 1; i >= 0; i--)); do eval "${CHAIN_EXIT[$i]}" || true; done
	for p in "${CHAIN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${CHAIN_PIDS[@]}"; do chain_stop "$p"; done
	[ -z "${SVC_DIR:-}" ] || "$CHAIN_SRC/tests/pg/stop-services.sh" "$SVC_DIR" >/dev/null 2>&1 || true
	[ -n "$CHAIN_TMP" ] || return 0
	if [ "${CHAIN_KEEP:-0}" = 1 ] || [ "$CHAIN_FAILS" -gt 0 ]; then
		echo "logs kept in $CHAIN_TMP"
	else
		rm -rf "$CHAIN_TMP"
	fi
}

chain_at_exit() {
	CHAIN_EXIT+=("$1")
}

# The temp dir; PREFIX names it (default troop-chain).  As root it is in
# /tmp, where the postgres user of chain_services can reach it.
chain_init() {
	local base=${TMPDIR:-/tmp}
	[ "$(id -u)" -eq 0 ] && base=/tmp
	[ "${CHAIN_NO_BUILD:-0}" = 1 ] || {
		[ -x "$TROOP" ] || { echo "FAIL: $TROOP not built"; exit 1; }
		[ -x "$SIM" ] || { echo "FAIL: $SIM not built"; exit 1; }
	}
	CHAIN_TMP=$(mktemp -d "$base/${1:-troop-chain}-XXXXXX") || exit 1
	chmod a+rx "$CHAIN_TMP"
	trap chain_cleanup EXIT
}

chain_fail() {
	echo "FAIL: $*"
	CHAIN_FAILS=$((CHAIN_FAILS + 1))
}

# Wait until FILE has a line with MARKER and a port=N field; echo N.
chain_port_from_log() {
	local file=$1 marker=$2 pid=$3 i line
	for i in $(seq 1 500); do
		line=$(grep -a -m1 "$marker" "$file" 2>/dev/null) || true
		if [ -n "$line" ] && [ "$line" != "${line#*port=}" ]; then
			line=${line##*port=}
			echo "${line%% *}"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	echo "FAIL: no '$marker' in $file:" >&2
	cat "$file" >&2
	return 1
}

chain_wait_port() {
	chain_port_from_log "$@"
}

# chain_spawn LOG HOME CMD...: CMD in the background (CHAIN_WRAP before
# it, TROOP_HOME=HOME unless HOME is ""), output to LOG; sets CHAIN_PID.
chain_spawn() {
	local log=$1 home=$2 wrap
	shift 2
	read -r -a wrap <<<"${CHAIN_WRAP:-}"
	[ -z "$home" ] || mkdir -p "$home"
	(
		[ -z "$home" ] || export TROOP_HOME=$home
		exec ${wrap[@]+"${wrap[@]}"} "$@"
	) >"$log" 2>&1 &
	CHAIN_PID=$!
	CHAIN_PIDS+=($!)
}

# A loopback port free now (for a process whose log will not say its port).
chain_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Until URL answers 2xx (10 s); 1 if it never does.
chain_wait_http() {
	local i
	for i in $(seq 1 500); do
		curl -fs -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.02
	done
	echo "FAIL: $1 did not come up" >&2
	return 1
}

CHAIN_NCOORD=0
chain_coordinator_bg() {
	local unverified=--allow-unverified
	[ "${CHAIN_VERIFY:-0}" = 1 ] && unverified=
	CHAIN_NCOORD=$((CHAIN_NCOORD + 1))
	COORD_DIR=$CHAIN_TMP/coordinator$CHAIN_NCOORD
	COORD_LOG=$COORD_DIR.log
	chain_spawn "$COORD_LOG" "" "$TROOP" coordinator --listen 127.0.0.1:0 \
		--data-dir "$COORD_DIR" $unverified "$@"
	COORD_PID=$CHAIN_PID
}

chain_coordinator() {
	chain_coordinator_bg "$@"
	COORD_PORT=$(chain_port_from_log "$COORD_LOG" coordinator_started "$COORD_PID") || exit 1
	COORD_URL=http://127.0.0.1:$COORD_PORT
}

chain_sim() {
	local name=$1 log i
	shift
	log=$CHAIN_TMP/sim-$name.log
	chain_spawn "$log" "" "$SIM" --listen 127.0.0.1:0 "$@"
	SIM_PID=$CHAIN_PID
	for i in $(seq 1 500); do
		if grep -q "listening on" "$log" 2>/dev/null; then
			SIM_PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$log" | head -n1)
			return 0
		fi
		kill -0 "$SIM_PID" 2>/dev/null || break
		sleep 0.02
	done
	echo "FAIL: engine-sim $name did not start"; cat "$log"; exit 1
}

chain_worker() {
	local name=$1 engine=$2
	shift 2
	chain_spawn "$CHAIN_TMP/worker-$name.log" "${WORKER_HOME:-$CHAIN_TMP/home-worker-$name}" \
		"$TROOP" worker --coordinator "$COORD_URL" --listen 127.0.0.1:0 \
		--advertise 127.0.0.1 ${engine:+--engine "$engine"} --name "$name" "$@"
	WORKER_PID=$CHAIN_PID
	WORKER_PORT=$(chain_port_from_log "$CHAIN_TMP/worker-$name.log" worker_started "$WORKER_PID") ||
		exit 1
}

chain_up() {
	local name=$1 coord=$2
	shift 2
	chain_spawn "$CHAIN_TMP/up-$name.log" "${CLIENT_HOME:-$CHAIN_TMP/home-client}" \
		"$TROOP" up --listen 127.0.0.1:0 --coordinator "$coord" "$@"
	UP_PID=$CHAIN_PID
	UP_PORT=$(chain_port_from_log "$CHAIN_TMP/up-$name.log" client_started "$UP_PID") || exit 1
	UP_URL=http://127.0.0.1:$UP_PORT
}

# The CLI as the client's user.
chain_troop() {
	TROOP_HOME=${CLIENT_HOME:-$CHAIN_TMP/home-client} TROOP_COORDINATOR=$COORD_URL "$TROOP" "$@"
}

chain_wait_nodes() {
	local model=$1 want=$2 i n
	for i in $(seq 1 300); do
		n=$(curl -s "$COORD_URL/peers?model=$model" | python3 -c \
			'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["status"]=="IDLE"))' \
			2>/dev/null)
		[ "${n:-0}" -ge "$want" ] && return 0
		sleep 0.05
	done
	echo "FAIL: $want idle node(s) serving $model did not appear"
	curl -s "$COORD_URL/peers"
	exit 1
}

# The tail of the servers' logs (after a failure).
chain_services_logs() {
	local log
	for log in "$SVC_DIR/pg/server.log" "$SVC_DIR/redis/server.log"; do
		[ -f "$log" ] && { echo "--- $log (tail)"; tail -20 "$log"; }
	done
	return 0
}

# A private PostgreSQL and Redis under $CHAIN_TMP/NAME (tests/pg), stopped
# at exit; exports DATABASE_URL and REDIS_URL, sets SVC_DIR.  Exits 1
# (never skips) when they cannot be started.
chain_services() {
	local env_out
	SVC_DIR=$CHAIN_TMP/${1:-svc}
	if ! env_out=$("$CHAIN_SRC/tests/pg/start-services.sh" "$SVC_DIR"); then
		echo "FAIL: could not start PostgreSQL and Redis (reason above)" >&2
		exit 1
	fi
	eval "$env_out"
}

chain_stop_clean() {
	local pid=$1 log=$2 name=$3 rc
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rc=$?
	if [ "$rc" != 0 ]; then
		chain_fail "$name exited with status $rc after SIGTERM"
		tail -30 "$log"
	elif grep -q "Sanitizer\|runtime error:" "$log"; then
		chain_fail "$name: sanitizer report in $log"
		grep -A20 "Sanitizer\|runtime error:" "$log" | head -40
	else
		echo "ok: $name stopped cleanly"
	fi
}
