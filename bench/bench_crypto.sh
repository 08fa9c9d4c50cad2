#!/bin/sh
# bench_crypto.sh - build bench/bench_crypto.c against the build's libtroop
# and run it.  Usage: bench/bench_crypto.sh [seconds-per-figure]
# BUILD_DIR (default: build) names the CMake build directory to use; it is
# configured and libtroop built there if needed.  Use an optimised build
# (the default RelWithDebInfo), not a sanitizer build, for real figures.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build" >/dev/null
fi
cmake --build "$build" --target troop_lib -j2 >/dev/null

out=$build/bench_crypto
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/src/lib" -I"$root/src" \
	"$root/bench/bench_crypto.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$out"
exec "$out" "$@"
