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

# the tests' harness: the coordinator on 127.0.0.1:0, the port from its
# log, stopped and its temp dir removed at exit
export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-poh
trap 'exit 130' INT TERM

# default CPU class (512 x 512, 32 rounds), no rate limit, one server thread
CHAIN_VERIFY=1 chain_coordinator --threads 1 --poh-rate-limit 0 --poh-min-node-age 0
port=$COORD_PORT
pid=$COORD_PID
"$out" --url "http://127.0.0.1:$port" --pid "$pid" --runs "$runs"
