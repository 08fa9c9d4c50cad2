#!/usr/bin/env bash
# bench_registry.sh - memory per node and time per put/get/find of the
# node registry (issue "Speed under concurrency", item 3: 1,000,000 live
# nodes in under 300 MB on the in-process registry).
#
#   bench/bench_registry.sh [BUILD_DIR]
#
# Compiles bench/bench_registry.c against BUILD_DIR's libtroop_coordinator.a
# and libtroop_lib.a (default: $BUILD_DIR, else build) and runs it:
#   1. the in-process registry ("memory:") with REGISTRY_NODES nodes
#      (default 1000000): resident memory before/after, bytes per node;
#   2. if BASE_BUILD names another build (e.g. of the previous commit), the
#      same program built against it, first, for a before/after ratio in
#      one run;
#   3. if COORD_NODES is set (e.g. 200000; at most 4000000), the whole
#      coordinator: `troop coordinator` (SQLite ledger, --node-ttl 3600)
#      gets COORD_NODES real signed heartbeats from bench/loadgen.c (its
#      records: one model, hardware and engine JSON, no seal key), and its
#      resident memory before and after gives bytes per node; with
#      BASE_BUILD, that build's troop first;
#   4. Redis, if redis-server is installed and the build has the backend:
#      a redis-server this script starts on a free loopback port (no
#      persistence), REDIS_NODES nodes (default 100000; 1M puts through
#      round trips take minutes), INFO memory's used_memory per node.
# Prints "RESULT ..." lines (bench/run.sh).  A missed target is reported,
# not failed; exits non-zero only when the benchmark could not run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$PWD/$build ;; esac
nodes=${REGISTRY_NODES:-1000000}
rnodes=${REDIS_NODES:-100000}

die() { echo "bench_registry: $*" >&2; exit 1; }

# compile DIR OUT: the benchmark against the libraries in DIR
compile() {
	local dir=$1 out=$2 hi=()
	[ -f "$dir/libtroop_coordinator.a" ] && [ -f "$dir/libtroop_lib.a" ] ||
		die "$dir: libtroop_coordinator.a or libtroop_lib.a missing: build first (make)"
	pkg-config --exists hiredis && hi=(hiredis)
	# shellcheck disable=SC2046
	cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
		"$root/bench/bench_registry.c" "$dir/libtroop_coordinator.a" "$dir/libtroop_lib.a" \
		$(pkg-config --cflags --libs libsodium jansson ${hi[@]+"${hi[@]}"}) \
		-lpthread -lm -o "$out"
}

tmp=$(mktemp -d /tmp/troop-bench-registry.XXXXXX)
rpid=
cleanup() {
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
compile "$build" "$tmp/bench_registry"
if [ -n "${BASE_BUILD:-}" ]; then
	compile "$BASE_BUILD" "$tmp/bench_registry_base"
	echo "--- baseline ($BASE_BUILD)"
	"$tmp/bench_registry_base" --nodes "$nodes" | tee "$tmp/base.out" | sed 's/^RESULT /RESULT baseline: /'
	echo "--- this build ($build)"
fi
"$tmp/bench_registry" --nodes "$nodes" | tee "$tmp/new.out"
if [ -n "${BASE_BUILD:-}" ]; then
	b=$(sed -n 's/^RESULT registry memory: \([0-9]*\) bytes\/node.*/\1/p' "$tmp/base.out")
	a=$(sed -n 's/^RESULT registry memory: \([0-9]*\) bytes\/node.*/\1/p' "$tmp/new.out")
	[ -n "$a" ] && [ -n "$b" ] && [ "$a" -gt 0 ] &&
		echo "RESULT registry memory: $b -> $a bytes/node at $nodes nodes" \
			"(ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')x smaller)"
fi

# coord_phase DIR LABEL: COORD_NODES heartbeats into DIR/troop coordinator
coord_phase() (
	export TROOP_BUILD_DIR=$1 TROOP_BIN=$1/troop
	# shellcheck disable=SC1091
	. "$root/tests/integration/troop_chain.sh"
	CHAIN_NO_BUILD=1 chain_init troop-bench-registry
	chain_coordinator --threads 2 --node-ttl 3600 --log-level info
	rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$COORD_PID/status"; }
	r0=$(rss)
	"$tmp/loadgen" --port "$COORD_PORT" --phases peers --peer-nodes "$COORD_NODES" \
		--peer-models 40 --duration 1 >"$tmp/loadgen-$2.out" 2>&1 ||
		{ tail -n 20 "$tmp/loadgen-$2.out" "$COORD_LOG" >&2; exit 1; }
	r1=$(rss)
	grep -E 'registered' "$tmp/loadgen-$2.out" || true
	echo "coordinator ($2): resident $r0 kB before, $r1 kB after $COORD_NODES heartbeats"
	echo "RESULT coordinator ($2): $(((r1 - r0) * 1024 / COORD_NODES)) bytes/node RSS at" \
		"$COORD_NODES nodes (loadgen's heartbeats, no seal key)"
)
if [ -n "${COORD_NODES:-}" ]; then
	[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
	# shellcheck disable=SC2046
	cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
		"$root/bench/loadgen.c" "$build/libtroop_lib.a" \
		$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
		-lpthread -lm -o "$tmp/loadgen"
	[ -n "${BASE_BUILD:-}" ] && coord_phase "$BASE_BUILD" baseline
	coord_phase "$build" "this build"
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	echo "bench_registry: redis-server or redis-cli not installed: Redis skipped"
	exit 0
fi
if ! nm "$build/libtroop_coordinator.a" 2>/dev/null | grep ' D registry_redis_ops' >/dev/null; then
	echo "bench_registry: the build has no Redis backend (hiredis): Redis skipped"
	exit 0
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$tmp" --logfile "$tmp/redis.log" &
rpid=$!
for _ in $(seq 50); do
	redis-cli -p "$port" ping >/dev/null 2>&1 && break
	sleep 0.1
done
used() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
u0=$(used)
"$tmp/bench_registry" --url "redis://127.0.0.1:$port" --nodes "$rnodes" \
	--lookups $((rnodes / 10)) | grep -v '^RESULT registry redis: [0-9]* bytes/node' || true
u1=$(used)
keys=$(redis-cli -p "$port" dbsize)
echo "redis used_memory before $u0, after $u1 bytes ($keys keys)"
awk -v u0="$u0" -v u1="$u1" -v n="$rnodes" 'BEGIN {
	b = (u1 - u0) / n
	printf "RESULT registry redis: %.0f bytes/node used_memory at %d nodes (%.0f MB at 1M; " \
	    "target 300 bytes/node; ratio %.2f of target)\n", b, n, b, b / 300 }'
