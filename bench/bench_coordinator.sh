#!/usr/bin/env bash
# bench_coordinator.sh - throughput and latency of `troop coordinator`
# under signed load (DESIGN.md sections 4, 6, 7; issue 4's targets):
# heartbeats/s, durable authorizations/s on SQLite, p99 at half those
# rates (open loop), and GET /peers?model=X p99 with 100k live nodes.
#
#   bench/bench_coordinator.sh [BUILD_DIR] [-- loadgen options]
#
# BUILD_DIR (default: $BUILD_DIR, else build) must hold a built `troop`
# and libtroop_lib.a (an optimised build: the default RelWithDebInfo, not
# a sanitizer build).  bench/loadgen.c is compiled into BUILD_DIR here.
# One coordinator serves every phase:
#   troop coordinator --listen 127.0.0.1:0 --data-dir TMP --allow-unverified
#     --starter-credits 1000000000000 --threads 2 --node-ttl 3600
#     --anon-rate-limit 0
# (--node-ttl 3600 keeps the 100k registered nodes of the /peers phase
# live; it changes no work a heartbeat does; --anon-rate-limit 0 lets the
# /peers phases go past 50 requests a second from one address).  Its log goes to a file,
# whose tail is shown if it fails.  Environment:
#   LOADGEN_ARGS    extra loadgen options (e.g. "--duration 2 --peer-nodes 20000")
#   COORD_THREADS   server threads (2)
#   COORD_WRAP      a command to run the coordinator under, e.g.
#                   "perf record -g -o /tmp/coord.perf" (profiling)
#   KEEP_LOG=FILE   copy the coordinator's log there
# Prints "RESULT ..." lines (collected by bench/run.sh).  Exits non-zero
# only when the benchmark could not run; a missed target is reported, not
# failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	build=$1
	shift
fi
[ "${1:-}" = "--" ] && shift
case $build in /*) ;; *) build=$PWD/$build ;; esac

die() { echo "bench_coordinator: $*" >&2; exit 1; }

[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -f "$build/libtroop_lib.a" ] || die "$build/libtroop_lib.a missing: build the project first"

lg=$build/bench_loadgen
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
	"$root/bench/loadgen.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$lg"
"$lg" --selftest

# the harness of the tests: the coordinator on 127.0.0.1:0, the port from
# its log (which must be at info level: coordinator_started), stopped and
# its temp dir removed at exit
export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-coord
cpid=     # the coordinator itself (under COORD_WRAP: that command's child)
# the coordinator first: a wrapper (perf) may not pass the signal on
chain_at_exit '[ -n "$cpid" ] && [ "$cpid" != "$COORD_PID" ] && chain_stop "$cpid"'
chain_at_exit '[ -n "${KEEP_LOG:-}" ] && [ -f "$COORD_LOG" ] && cp "$COORD_LOG" "$KEEP_LOG"'
trap 'exit 130' INT TERM

CHAIN_WRAP=${COORD_WRAP:-} chain_coordinator --starter-credits 1000000000000 \
	--threads "${COORD_THREADS:-2}" --node-ttl 3600 --anon-rate-limit 0 --log-level info
port=$COORD_PORT
cpid=$COORD_PID
if [ -n "${COORD_WRAP:-}" ]; then
	cpid=$(pgrep -P "$COORD_PID" | head -n1 || true)
fi
echo "coordinator: pid ${cpid:-$COORD_PID}, port $port, $(nproc) cores, --threads ${COORD_THREADS:-2}," \
	"SQLite ledger in $COORD_DIR (WAL, synchronous=FULL, group commit)"


read -r -a extra <<<"${LOADGEN_ARGS:-}"
rc=0
"$lg" --port "$port" ${cpid:+--coord-pid "$cpid"} ${extra[@]+"${extra[@]}"} "$@" || rc=$?

if ! kill -0 "${cpid:-$COORD_PID}" 2>/dev/null; then
	tail -n 20 "$COORD_LOG" >&2 || true
	die "the coordinator exited during the benchmark"
fi
echo "coordinator log: $(wc -l <"$COORD_LOG") lines," \
	"$(grep -c ' WARN \| ERROR ' "$COORD_LOG" || true) warnings/errors"
grep ' WARN \| ERROR ' "$COORD_LOG" | head -n 5 || true
if [ "$rc" -ne 0 ]; then
	tail -n 20 "$COORD_LOG" >&2 || true
	die "loadgen failed (exit $rc)"
fi
