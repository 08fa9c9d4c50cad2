#!/usr/bin/env bash
# make-demo.sh - what `make demo` runs: install the build packages that are
# missing, configure, build only what the demo needs (troop and the engine
# simulator), then run `troop demo`.  Prints one short line per stage; the
# tools' own output goes to a log file, shown (its last lines) when a
# stage fails.
#
#   scripts/make-demo.sh [BUILD_DIR] [JOBS] [-- troop demo options...]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=${2:-$(nproc)}
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
mkdir -p "$build"
log=$build/make-demo.log
: >"$log"

stage() {
  local what=$1 t0=$SECONDS
  shift
  printf '%-48s' "$what ..."
  if "$@" >>"$log" 2>&1; then
    echo " done ($((SECONDS - t0)) s)"
    return 0
  fi
  echo " FAILED"
  echo "---- last lines of $log ----"
  tail -n 40 "$log"
  echo "---- the whole log: $log ----"
  exit 1
}

stage "[1/3] build packages (Debian, sudo if needed)" scripts/install-deps.sh build
if [ ! -f "$build/CMakeCache.txt" ]; then
  stage "[2/3] configuring (cmake)" cmake -S . -B "$build" -DTROOP_WERROR=ON ${CMAKE_FLAGS:-}
else
  printf '%-48s already done\n' "[2/3] configuring (cmake) ..."
fi
stage "[3/3] building troop and engine-sim" cmake --build "$build" -j"$jobs" --target troop engine-sim
echo
exec "$build/troop" demo "$@"
