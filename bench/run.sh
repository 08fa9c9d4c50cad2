#!/usr/bin/env bash
# run.sh - `make bench`: run every benchmark script in bench/ against one
# build and summarise what they measured.
#
#   bench/run.sh [BUILD_DIR]        (default: build)
#
# Runs, in this order, each that exists: bench/bench_*.sh (sorted by name),
# then bench/http_health.sh, then bench/sim_scale.sh (its short version:
# 10,000 simulated workers for 1 minute; SIM_FULL=1 in the environment runs
# the 10-minute one with 100,000, which needs BENCH_TIMEOUT above 900).  Each gets a header line and runs from the
# repository root with BUILD_DIR (absolute) in the environment and as its
# first argument; bench_crypto.sh, whose first argument is seconds per
# figure, gets it only in the environment.  A script that fails (non-zero
# exit, or killed after BENCH_TIMEOUT seconds, default 600) is reported
# and the next one runs; run.sh then exits 1 at the end.  A missed target
# is not a failure: benchmarks report, tests assert.
#
# Summary: every line a script printed starting with "RESULT "; for a
# script that printed none, its lines that mention a ratio or a target.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
export BUILD_DIR=$build
# load generators read /peers and /v1/models far faster than a stranger
# may: the per-address limit on anonymous reads is off for benchmarks
export TROOP_ANON_RATE_LIMIT=${TROOP_ANON_RATE_LIMIT:-0}
timeout_s=${BENCH_TIMEOUT:-600}

cd "$root" || exit 1
[ -x "$build/troop" ] || echo "run.sh: note: $build/troop is missing; scripts that need it will fail" >&2

scripts=()
for f in bench/bench_*.sh; do
	[ -f "$f" ] && scripts+=("$f")
done
[ -f bench/http_health.sh ] && scripts+=(bench/http_health.sh)
[ -f bench/sim_scale.sh ] && scripts+=(bench/sim_scale.sh)
if [ ${#scripts[@]} -eq 0 ]; then
	echo "run.sh: no benchmark scripts in bench/" >&2
	exit 1
fi

logdir=$(mktemp -d /tmp/troop-bench-run.XXXXXX)
trap 'rm -rf "$logdir"' EXIT
failed=()
summary=()
t_all=$(date +%s)

for s in "${scripts[@]}"; do
	name=$(basename "$s" .sh)
	args=("$build")
	case $name in bench_crypto) args=() ;; esac
	echo
	echo "=================== $name ($s${args[*]:+ ${args[*]}}) ==================="
	t0=$(date +%s)
	# the script's output goes to the terminal as it comes, and to a log
	cmd=("$s")
	[ -x "$s" ] || cmd=(bash "$s")
	timeout -k 10 "$timeout_s" "${cmd[@]}" ${args[@]+"${args[@]}"} 2>&1 |
		tee "$logdir/$name.log"
	rc=${PIPESTATUS[0]}
	dt=$(($(date +%s) - t0))
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && why="timed out after ${timeout_s} s" || why="exit $rc"
		echo "=================== $name: FAILED ($why, ${dt} s) ==================="
		failed+=("$name ($why)")
	else
		echo "=================== $name: done (${dt} s) ==================="
	fi
	if grep -q '^RESULT ' "$logdir/$name.log"; then
		while IFS= read -r line; do
			summary+=("$name: ${line#RESULT }")
		done < <(grep '^RESULT ' "$logdir/$name.log")
	else
		while IFS= read -r line; do
			summary+=("$name: ${line#"${line%%[![:space:]]*}"}")
		done < <(grep -Ei 'ratio|target' "$logdir/$name.log")
	fi
done

echo
echo "=================== summary ($(($(date +%s) - t_all)) s, $(nproc) cores) ==================="
for line in ${summary[@]+"${summary[@]}"}; do
	echo "  $line"
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "failed to run:"
	for f in "${failed[@]}"; do
		echo "  $f"
	done
	exit 1
fi
exit 0
