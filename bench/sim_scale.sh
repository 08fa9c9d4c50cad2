#!/usr/bin/env bash
# sim_scale.sh - the scale simulation behind docs/SCALE.md: simulated
# workers heartbeating at their real interval (node_ttl / 3 = 10 s) into
# two coordinators that share one PostgreSQL ledger and one Redis
# registry, clients authorizing at a steady rate with every job settled by
# its node's signed receipt (bench/sim_scale.c), reported each minute and
# at the end, then the ledger checked: nothing lost.
#
#   bench/sim_scale.sh [BUILD_DIR]
#
# `make bench` (bench/run.sh) runs the short version: 10,000 workers for
# 1 minute.  SIM_FULL=1 runs the full one: 100,000 workers for 10 minutes
# (the figures in docs/SCALE.md).  Before the simulation, unless
# SIM_CALIBRATE=0, four short calibration runs on fresh coordinators and
# a fresh database each measure the cost of one kind of request alone:
# heartbeats only, jobs only (authorize + receipt), authorizations only,
# /peers only; each
# prints coordinator CPU, Redis commands and PostgreSQL transactions per
# request.  Environment (defaults: short / full):
#   SIM_NODES        simulated workers (10000 / 100000)
#   SIM_DURATION     seconds of the simulation (60 / 600)
#   SIM_REPORT       seconds between report lines (60)
#   SIM_AUTH_RATE    authorizations/s, each settled (100)
#   SIM_HB_THREADS   the simulator's heartbeat threads (48 / 256)
#   SIM_COORD_THREADS  each coordinator's --threads (16: on PostgreSQL and
#                    Redis a server thread waits for each round trip, and
#                    the default, one per core, caps a coordinator at its
#                    threads / round-trip time)
#   SIM_ARGS         extra bench/sim_scale.c options
#   SIM_CALIBRATE    0: skip the calibration runs; hb, auth or peers: only
#                    the heartbeats, authorizations or /peers one (1: all)
#   SIM_PEERS_NODES  nodes registered for the /peers calibration (10000);
#                    every other page starts at a random node's cursor
#   SIM_RUN          0: only the calibration runs (1)
#   TROOP_PG_FSYNC   "on" runs PostgreSQL with fsync (default off, as tests do)
# The coordinators run with their default --node-ttl (30 s: heartbeats
# every 10 s), --starter-credits 1000000000000 (the simulated clients never
# run out), --log-level warn, and --max-nonces 4000000: every simulated
# worker signs from 127.0.0.1, and one address may hold a quarter of the
# nonce store (121 s of signed requests), which the default 1,000,000
# caps at about 2,000 requests/s.  BUILD_DIR (default $BUILD_DIR, else
# build) must hold `troop` and `sim_scale`.  Prints "RESULT ..." lines.
# Exits 1 when it could not run, 2 when the ledger check failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
[ $# -gt 0 ] && build=$1
case $build in /*) ;; *) build=$PWD/$build ;; esac
if [ "${SIM_FULL:-0}" = 1 ]; then
	nodes=${SIM_NODES:-100000} duration=${SIM_DURATION:-600}
else
	nodes=${SIM_NODES:-10000} duration=${SIM_DURATION:-60}
fi
report=${SIM_REPORT:-60}
coord_threads=${SIM_COORD_THREADS:-16}
auth_rate=${SIM_AUTH_RATE:-100}
hb_threads=${SIM_HB_THREADS:-48}
[ "${SIM_FULL:-0}" = 1 ] && hb_threads=${SIM_HB_THREADS:-256}
read -r -a extra <<<"${SIM_ARGS:-}"

die() { echo "sim_scale: $*" >&2; exit 1; }
case ${SIM_CALIBRATE:-1} in
0 | 1 | hb | auth | peers) ;;
*) die "SIM_CALIBRATE=$SIM_CALIBRATE: use 1 (all), 0 (none), hb, auth or peers" ;;
esac
[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -x "$build/sim_scale" ] || die "$build/sim_scale missing: build the project first (make)"
command -v psql >/dev/null 2>&1 || die "psql missing: scripts/install-deps.sh test"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli missing: scripts/install-deps.sh test"

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
# /peers is an anonymous read: no per-address limit for the simulation
export TROOP_ANON_RATE_LIMIT=0
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-sim-scale
trap 'exit 130' INT TERM
chain_services svc
pg_base=$DATABASE_URL
redis_base=$REDIS_URL
unset DATABASE_URL REDIS_URL TROOP_DATABASE_URL TROOP_REDIS_URL
echo "servers: PostgreSQL $(psql -qtA "$pg_base" -c 'SHOW server_version') (fsync=$(psql -qtA \
"$pg_base" -c 'SHOW fsync')), Redis $(redis-cli -u "$redis_base" info server 2>/dev/null |
	sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p'); machine: $(nproc) cores," \
	"load average $(cut -d' ' -f1-3 /proc/loadavg)"

pids=()
# start_pair NAME: a fresh database and Redis prefix, two coordinators on
# them; sets SIM_COORDS (sim_scale options) and pids
start_pair() {
	local name=$1 db=sim_$1 port url pid
	psql -q -v ON_ERROR_STOP=1 "$pg_base" -c "CREATE DATABASE $db" >/dev/null
	DB_URL=${pg_base%/*}/$db
	# a Redis database of its own (SELECT n): INFO's memory is the server's,
	# so each run's prefix is flushed when it ends
	REG_URL="$redis_base/0?prefix=$name:"
	SIM_COORDS=()
	pids=()
	for _ in 1 2; do
		port=$(chain_free_port)
		chain_spawn "$CHAIN_TMP/coord-$name-$port.log" "" "$TROOP" coordinator \
			--listen "127.0.0.1:$port" --data-dir "$CHAIN_TMP/coord-$name-$port" \
			--allow-unverified --starter-credits 1000000000000 --log-level warn \
			--threads "$coord_threads" \
			--database-url "$DB_URL" --registry-url "$REG_URL" --max-nonces 4000000
		pid=$CHAIN_PID
		chain_wait_http "http://127.0.0.1:$port/public-key" ||
			{ tail -20 "$CHAIN_TMP/coord-$name-$port.log" >&2; die "coordinator did not start"; }
		SIM_COORDS+=(--coord "127.0.0.1:$port" --coord-pid "$pid")
		pids+=("$pid")
	done
}

stop_pair() {
	local p
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null || die "a coordinator exited during the run"
		chain_stop "$p"
	done
	pids=()
	redis-cli -u "$redis_base" flushall >/dev/null
}

# run NAME SIM_OPTIONS...: sim_scale against a fresh pair
run() {
	local name=$1 rc=0
	shift
	start_pair "$name"
	"$build/sim_scale" "${SIM_COORDS[@]}" --redis-url "$redis_base" --redis-prefix "$name:" \
		--database-url "$DB_URL" --pg-pid "$(head -n1 "$SVC_DIR/pg/data/postmaster.pid")" \
		--hb-threads "$hb_threads" "$@" \
		${extra[@]+"${extra[@]}"} || rc=$?
	stop_pair
	[ "$rc" -le 2 ] || die "sim_scale ($name) could not run"
	return "$rc"
}

status=0
peers_nodes=${SIM_PEERS_NODES:-10000}
# the calibration runs, each one kind of request on a fresh pair
cal_hb() {
	echo "=== calibration: heartbeats only (10000 nodes every 10 s, 30 s)"
	run calhb --nodes 10000 --interval 10 --auth-rate 0 --duration 30 --report 30 |
		grep -E 'RESULT|registered|Redis commands|first error' || status=1
}
# without heartbeats the nodes registered before the clock live for
# node_ttl (30 s) only: these runs last 20 s
cal_job() {
	echo "=== calibration: jobs only (authorize + receipt, 100/s, 20 s; 1000 nodes registered)"
	run caljob --nodes 1000 --interval 0 --auth-rate 100 --duration 20 --report 20 |
		grep -E 'RESULT|Redis commands|first error' || status=1
}
cal_auth() {
	echo "=== calibration: authorizations only, no receipts (100/s, 20 s)"
	run calauth --nodes 1000 --interval 0 --auth-rate 100 --no-settle --duration 20 \
		--report 20 | grep -E 'RESULT|Redis commands|first error' || status=1
}
cal_peers() {
	echo "=== calibration: /peers?limit=50 only (200/s, 20 s; $peers_nodes nodes registered)"
	run calpeers --nodes "$peers_nodes" --interval 0 --auth-rate 0 --peers-rate 200 \
		--duration 20 --report 20 | grep -E 'RESULT|first error' || status=1
}
case ${SIM_CALIBRATE:-1} in
0) ;;
hb | auth | peers) "cal_$SIM_CALIBRATE" ;;
1) cal_hb; cal_job; cal_auth; cal_peers ;;
esac
if [ "${SIM_RUN:-1}" != 0 ]; then
	echo "=== simulation: $nodes workers every 10 s, $auth_rate jobs/s, $duration s"
	run main --nodes "$nodes" --interval 10 --auth-rate "$auth_rate" --duration "$duration" \
		--report "$report" || status=$?
fi
echo "machine after the run: load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
