#!/bin/sh
# bench_poh.sh - proof-of-hardware: the coordinator's verification CPU time
# against the worker's compute time for the same challenge, with the bound
# 2*k/n checked (exit 1 when over).  Builds bench/bench_poh.c with cc
# against the build's static libraries, starts a `troop coordinator` on a
# loopback port for the end-to-end figures, and stops it afterwards.
# Usage: bench/bench_poh.sh [runs]
# BUILD_DIR (default: build) names the CMake build directory; use an
# optimised build (the default RelWithDebInfo), not a sanitizer build.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac
runs=${1:-20}

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target troop -j2 >/dev/null

out=$build/bench_poh
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/src/lib" -I"$root/src/worker" -I"$root/src" \
	"$root/bench/bench_poh.c" "$build/libtroop_worker.a" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -ldl -lm -o "$out"

tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# default CPU class (512 x 512, 32 rounds), no rate limit, one server thread
"$build/troop" coordinator --listen 127.0.0.1:0 --data-dir "$tmp/coord" --threads 1 \
	--poh-rate-limit 0 --poh-min-node-age 0 >"$tmp/coord.log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 100); do
	port=$(sed -n 's/.*coordinator_started.* port=\([0-9]*\).*/\1/p' "$tmp/coord.log" 2>/dev/null | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "bench_poh: the coordinator did not start:" >&2
	cat "$tmp/coord.log" >&2
	exit 1
fi
"$out" --url "http://127.0.0.1:$port" --pid "$pid" --runs "$runs"
