#!/bin/sh
# bench_worker.sh - the worker proxy against the engine simulator called
# directly, in one run (issue 5, section 8).  Starts, in a temp directory:
# two engine simulators (one unpaced, one at 200 tokens/s), a coordinator
# whose ticket key this script makes, and `troop worker` serving both
# simulators; then builds bench/bench_worker.c against the build's static
# libraries and runs it.  Prints each figure and the ratios, and the RSS
# of the idle worker (at start, and idle again after the load).
#
# Usage: bench/bench_worker.sh [build-dir]   (env: N=500 requests for the
# time to first byte; BUILD_DIR is the default build directory)
# The build is configured and built there if needed.  Use an optimised
# build (the default RelWithDebInfo), not a sanitizer build, for real
# figures.  WORKER_THREADS (default 1) sets the worker's --threads; KEEP_TMP=1
# keeps the logs; WORKER_WRAP prefixes the worker's command (a profiler).
# Prints "RESULT ..." lines for bench/run.sh.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
n=${N:-500}
threads=${WORKER_THREADS:-1}

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target troop engine-sim -j2 >/dev/null

out=$build/bench_worker
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/src/lib" -I"$root/src" \
	"$root/bench/bench_worker.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$out"

# the tests' harness: every process on 127.0.0.1:0 with the port from its
# log, stopped and the temp dir removed at exit (kept with CHAIN_KEEP=1)
export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_KEEP=${KEEP_TMP:+1}
chain_init troop-bench-worker
tmp=$CHAIN_TMP
trap 'exit 130' INT TERM

chain_sim direct --tokens-per-second 0
sim_port=$SIM_PORT
chain_sim paced --tokens-per-second 200 --models paced:1b
paced_port=$SIM_PORT

# the coordinator creates its ticket key here; the load generator reads it
# to mint tickets
key=$tmp/ticket.key
chain_coordinator --ticket-key "$key" --threads 1
cpid=$COORD_PID

# WORKER_WRAP (e.g. "perf record -g -o /tmp/worker.perf") runs the worker
# under a profiler; the RSS figures are then the wrapper's.
CHAIN_WRAP=${WORKER_WRAP:-} WORKER_HOME=$tmp/w chain_worker w "" --threads "$threads" \
	--max-jobs 64 --log-level "${WORKER_LOG_LEVEL:-info}" --no-verify \
	--engine "ollama=http://127.0.0.1:$sim_port" --engine "vllm=http://127.0.0.1:$paced_port"
wpid=$WORKER_PID
worker_port=$WORKER_PORT

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
rss_parts() {
	awk '/^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } END { printf "anon %s kB, shared-library files %s kB", a, f }' \
		"/proc/$1/status"
	awk '/^Pss:/ { printf ", pss %s kB", $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || true
}
# the floor: a program that only links this machine's libcurl and calls
# curl_global_init, as every troop command does
cat >"$tmp/floor.c" <<'EOF'
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
	char l[256];
	FILE *f;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	f = fopen("/proc/self/status", "r");
	while (f && fgets(l, sizeof(l), f))
		if (strncmp(l, "VmRSS:", 6) == 0)
			fputs(l + 6, stdout);
	return 0;
}
EOF
# shellcheck disable=SC2046
cc -O2 "$tmp/floor.c" -o "$tmp/floor" $(pkg-config --cflags --libs libcurl)
sleep 1
rss_start=$(rss "$wpid")
parts_start=$(rss_parts "$wpid")

echo "# worker proxy vs engine-sim direct, $n requests for ttfb, worker --threads $threads"
echo "# $(nproc) cores; $(uname -r)"
[ -n "${BENCH_STOP_COORDINATOR:-}" ] && kill -STOP "$cpid"
"$out" "$sim_port" "$paced_port" "$worker_port" "$key" "$tmp/w/identity.key" "$n" |
	tee "$tmp/figures.txt"
[ -n "${BENCH_STOP_COORDINATOR:-}" ] && kill -CONT "$cpid"

# idle again: the worker gives freed buffers back at its next heartbeat
sleep 12
rss_after=$(rss "$wpid")
echo "worker_rss_idle_start_kb $rss_start   (target < 10240; $parts_start)"
echo "worker_rss_idle_after_load_kb $rss_after   ($(rss_parts "$wpid"))"
floor=$("$tmp/floor" | tr -dc 0-9)
echo "libcurl_floor_rss_kb $floor   (linking libcurl + curl_global_init, nothing else)"

fig() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/figures.txt"; }
if [ -z "$(fig ttfb_added_p50_ms)$(fig stream_ratio)" ]; then
	echo "bench_worker: the load generator printed no figures" >&2
	exit 1
fi
echo "RESULT worker added time to first byte p50: $(fig ttfb_added_p50_ms) ms (target < 0.5)"
echo "RESULT worker one stream, events/s through the worker / direct: $(fig stream_ratio) (target >= 0.80)"
echo "RESULT worker added latency per event p50: $(fig added_latency_per_event_p50_ms) ms"
echo "RESULT worker idle RSS: $rss_start kB (target < 10240; a process that only loads libcurl: $floor kB)"
