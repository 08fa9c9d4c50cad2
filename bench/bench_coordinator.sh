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
# (--node-ttl 3600 keeps the 100k registered nodes of the /peers phase
# live; it changes no work a heartbeat does).  Its log goes to a file,
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

TMP=$(mktemp -d /tmp/troop-bench-coord.XXXXXX)
COORD=    # the process started (COORD_WRAP's command, or the coordinator)
cpid=     # the coordinator itself
stop_pid() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
	# the coordinator first: a wrapper (perf) may not pass the signal on
	[ -n "$cpid" ] && [ "$cpid" != "$COORD" ] && stop_pid "$cpid"
	if [ -n "$COORD" ]; then
		stop_pid "$COORD"
		wait "$COORD" 2>/dev/null || true
	fi
	if [ -n "${KEEP_LOG:-}" ] && [ -f "$TMP/coord.log" ]; then
		cp "$TMP/coord.log" "$KEEP_LOG" || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r -a wrap <<<"${COORD_WRAP:-}"
# the log must be at info level: the port is read from coordinator_started
${wrap[@]+"${wrap[@]}"} "$build/troop" coordinator --listen 127.0.0.1:0 \
	--data-dir "$TMP/data" --allow-unverified --starter-credits 1000000000000 \
	--threads "${COORD_THREADS:-2}" --node-ttl 3600 --log-level info \
	>"$TMP/coord.log" 2>&1 &
COORD=$!
cpid=$COORD

port=
for _ in $(seq 1 200); do
	port=$(sed -n 's/.*coordinator_started.* port=\([0-9][0-9]*\).*/\1/p' "$TMP/coord.log" |
		head -n1)
	[ -n "$port" ] && break
	kill -0 "$COORD" 2>/dev/null || break
	sleep 0.05
done
if [ -z "$port" ]; then
	tail -n 20 "$TMP/coord.log" >&2 || true
	die "the coordinator did not log coordinator_started ... port=N"
fi
# the coordinator itself: a child of COORD_WRAP's command, if any
if [ -n "${COORD_WRAP:-}" ]; then
	cpid=$(pgrep -P "$COORD" | head -n1 || true)
fi
echo "coordinator: pid ${cpid:-$COORD}, port $port, $(nproc) cores, --threads ${COORD_THREADS:-2}," \
	"SQLite ledger in $TMP/data (WAL, synchronous=NORMAL)"


read -r -a extra <<<"${LOADGEN_ARGS:-}"
rc=0
"$lg" --port "$port" ${cpid:+--coord-pid "$cpid"} ${extra[@]+"${extra[@]}"} "$@" || rc=$?

if ! kill -0 "${cpid:-$COORD}" 2>/dev/null; then
	tail -n 20 "$TMP/coord.log" >&2 || true
	die "the coordinator exited during the benchmark"
fi
echo "coordinator log: $(wc -l <"$TMP/coord.log") lines," \
	"$(grep -c ' WARN \| ERROR ' "$TMP/coord.log" || true) warnings/errors"
grep ' WARN \| ERROR ' "$TMP/coord.log" | head -n 5 || true
if [ "$rc" -ne 0 ]; then
	tail -n 20 "$TMP/coord.log" >&2 || true
	die "loadgen failed (exit $rc)"
fi
