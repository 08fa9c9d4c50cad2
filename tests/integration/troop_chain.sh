# troop_chain.sh - sourced by the client's shell tests and bench/bench_client.sh:
# start a whole troop on loopback (coordinator, engine simulators, workers,
# `troop up`), each with its own TROOP_HOME and log under $CHAIN_TMP, learn
# the ports they bound from their logs, and stop everything on exit.
#
#   chain_init                     temp dir, cleanup trap (call first)
#   chain_coordinator [ARGS...]    sets COORD_URL
#   chain_sim NAME [ARGS...]       sets SIM_PORT
#   chain_worker NAME ENGINE_URL [ARGS...]   sets WORKER_PORT, WORKER_PID
#   chain_up NAME COORD_URL [ARGS...]        sets UP_PORT, UP_URL, UP_PID
#   chain_wait_nodes MODEL N       until N live nodes serve MODEL
#   chain_fail MESSAGE             print and count a failure
#   chain_stop_clean PID LOG NAME  SIGTERM; it must exit 0 with no
#                                  sanitizer report in its log
# Needs TROOP_BIN and TROOP_BUILD_DIR (ctest sets both).

BUILD=${TROOP_BUILD_DIR:-build}
TROOP=${TROOP_BIN:-$BUILD/troop}
SIM=$BUILD/engine-sim
CHAIN_PIDS=()
CHAIN_FAILS=0

chain_cleanup() {
	local p
	for p in "${CHAIN_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${CHAIN_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${CHAIN_KEEP:-0}" = 1 ] || [ "$CHAIN_FAILS" -gt 0 ]; then
		echo "logs kept in $CHAIN_TMP"
	else
		rm -rf "$CHAIN_TMP"
	fi
}

chain_init() {
	[ -x "$TROOP" ] || { echo "FAIL: $TROOP not built"; exit 1; }
	[ -x "$SIM" ] || { echo "FAIL: $SIM not built"; exit 1; }
	CHAIN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/troop-chain-XXXXXX")
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
		line=$(grep -a -m1 "$marker" "$file" 2>/dev/null)
		if [ -n "$line" ]; then
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

CHAIN_NCOORD=0
chain_coordinator() {
	CHAIN_NCOORD=$((CHAIN_NCOORD + 1))
	local log=$CHAIN_TMP/coordinator$CHAIN_NCOORD.log
	"$TROOP" coordinator --listen 127.0.0.1:0 --data-dir "$CHAIN_TMP/coordinator$CHAIN_NCOORD" \
		--allow-unverified "$@" >"$log" 2>&1 &
	CHAIN_PIDS+=($!)
	local port
	port=$(chain_port_from_log "$log" coordinator_started $!) || exit 1
	COORD_URL=http://127.0.0.1:$port
}

chain_sim() {
	local name=$1
	shift
	local log=$CHAIN_TMP/sim-$name.log i
	"$SIM" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
	CHAIN_PIDS+=($!)
	SIM_PID=$!
	for i in $(seq 1 500); do
		if grep -q "listening on" "$log" 2>/dev/null; then
			SIM_PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$log" | head -1)
			return 0
		fi
		sleep 0.02
	done
	echo "FAIL: engine-sim $name did not start"; cat "$log"; exit 1
}

chain_worker() {
	local name=$1 engine=$2
	shift 2
	local log=$CHAIN_TMP/worker-$name.log
	mkdir -p "$CHAIN_TMP/home-worker-$name"
	TROOP_HOME=$CHAIN_TMP/home-worker-$name "$TROOP" worker --coordinator "$COORD_URL" \
		--listen 127.0.0.1:0 --advertise 127.0.0.1 --engine "$engine" \
		--name "$name" "$@" >"$log" 2>&1 &
	WORKER_PID=$!
	CHAIN_PIDS+=($!)
	WORKER_PORT=$(chain_port_from_log "$log" worker_started $!) || exit 1
}

chain_up() {
	local name=$1 coord=$2
	shift 2
	local log=$CHAIN_TMP/up-$name.log
	mkdir -p "$CHAIN_TMP/home-client"
	TROOP_HOME=${CLIENT_HOME:-$CHAIN_TMP/home-client} "$TROOP" up --listen 127.0.0.1:0 \
		--coordinator "$coord" "$@" >"$log" 2>&1 &
	UP_PID=$!
	CHAIN_PIDS+=($!)
	UP_PORT=$(chain_port_from_log "$log" client_started $!) || exit 1
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
