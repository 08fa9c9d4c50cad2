#!/usr/bin/env bash
# bench_settle.sh - /authorize and receipt throughput of this build's
# coordinator side by side with a baseline build of another commit
# (default: main), in one run on one machine, as ratios (issue 14: the
# two witnesses must not cost the hot paths more than 10%).
#
#   bench/bench_settle.sh [BUILD_DIR]
#
# The baseline is `git archive BASE_REF` built (the troop target only,
# RelWithDebInfo) into BUILD_DIR/bench-baseline/COMMIT, reused while that
# commit is the same.  Each round starts a fresh coordinator (SQLite,
# --threads 2, --allow-unverified) for the baseline and then for this
# build, and runs bench/settle_load.c against it: nodes register, then
# threads authorize JOBS jobs, then send their receipts.  Two figures per
# phase: requests per second, and the coordinator's CPU time per request
# (from /proc; on a shared, loaded machine the rate swings by tens of
# percent from round to round, the CPU cost much less).  The figure of
# each side is the median of ROUNDS rounds; the load average is printed
# with it.  Environment:
#   BASE_REF   the baseline commit (main)      ROUNDS  rounds (7)
#   JOBS       jobs per round (4000)           THREADS client threads (2)
#   BENCH_JOBS make -j for the baseline build (2)
# Prints "RESULT ..." lines (bench/run.sh collects them): the rate ratio
# (this / baseline; target >= 0.90) and the CPU cost ratio (target <=
# 1.10).  Exits non-zero only when it could not run; a missed target is
# reported, not failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$PWD/$build ;; esac
base_ref=${BASE_REF:-main}
rounds=${ROUNDS:-7}
jobs=${JOBS:-4000}
threads=${THREADS:-2}

die() { echo "bench_settle: $*" >&2; exit 1; }

[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -f "$build/libtroop_lib.a" ] || die "$build/libtroop_lib.a missing: build the project first"

tool=$build/bench_settle_load
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
	"$root/bench/settle_load.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$tool"

commit=$(git -C "$root" rev-parse --verify "$base_ref^{commit}") ||
	die "no commit $base_ref to compare with (set BASE_REF)"
basedir=$build/bench-baseline/$commit
if [ ! -x "$basedir/build/troop" ]; then
	echo "building the baseline $base_ref ($commit) in $basedir"
	rm -rf "$basedir"
	mkdir -p "$basedir/src"
	git -C "$root" archive "$commit" | tar -x -C "$basedir/src"
	cmake -S "$basedir/src" -B "$basedir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		>"$basedir/configure.log" 2>&1 || { tail -n 20 "$basedir/configure.log"; die "configure failed"; }
	cmake --build "$basedir/build" --target troop -j"${BENCH_JOBS:-2}" \
		>"$basedir/build.log" 2>&1 || { tail -n 20 "$basedir/build.log"; die "baseline build failed"; }
fi

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-settle
trap 'exit 130' INT TERM

declare -A auth receipt auth_cpu receipt_cpu
# one round of one side: its figures into auth[side] and receipt[side]
run_side() {
	local side=$1 bin=$2 out
	TROOP=$bin chain_coordinator --starter-credits 1000000000000 --threads 2 \
		--report-wait 600
	out=$("$tool" --url "$COORD_URL" --threads "$threads" --jobs "$jobs" \
		--coord-pid "$COORD_PID") ||
		{ echo "$out"; tail -n 20 "$COORD_LOG" >&2; die "settle_load failed on $side"; }
	chain_stop "$COORD_PID"
	auth[$side]+="$(awk '/^RESULT authorize_per_s/ {print $3}' <<<"$out") "
	receipt[$side]+="$(awk '/^RESULT receipt_per_s/ {print $3}' <<<"$out") "
	auth_cpu[$side]+="$(awk '/^RESULT authorize_cpu_us/ {print $3}' <<<"$out") "
	receipt_cpu[$side]+="$(awk '/^RESULT receipt_cpu_us/ {print $3}' <<<"$out") "
	printf '  %-8s authorize %6s/s %6s us cpu  receipt %6s/s %6s us cpu  (load %s)\n' "$side" \
		"$(awk '/^RESULT authorize_per_s/ {print $3}' <<<"$out")" \
		"$(awk '/^RESULT authorize_cpu_us/ {print $3}' <<<"$out")" \
		"$(awk '/^RESULT receipt_per_s/ {print $3}' <<<"$out")" \
		"$(awk '/^RESULT receipt_cpu_us/ {print $3}' <<<"$out")" \
		"$(cut -d' ' -f1-3 /proc/loadavg)"
}

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "baseline $base_ref ($commit) vs this build; $rounds rounds of $jobs jobs, $threads client" \
	"threads, $(nproc) cores"
for r in $(seq 1 "$rounds"); do
	echo "round $r:"
	# alternate who goes first: a machine getting busier hurts both alike
	if [ $((r % 2)) -eq 1 ]; then
		run_side baseline "$basedir/build/troop"
		run_side this "$build/troop"
	else
		run_side this "$build/troop"
		run_side baseline "$basedir/build/troop"
	fi
done
# report NAME BASE THIS CMP LIMIT: the ratio this / baseline against its target
report() {
	local what=$1 b=$2 t=$3 cmp=$4 lim=$5 ratio verdict=ok
	ratio=$(awk -v t="$t" -v b="$b" 'BEGIN {printf "%.3f", t / b}')
	awk -v r="$ratio" -v l="$lim" -v c="$cmp" 'BEGIN {exit !(c == ">=" ? r < l : r > l)}' &&
		verdict="MISSED (target $cmp $lim)"
	echo "RESULT $what baseline $b this $t ratio $ratio $verdict" \
		"(load $(cut -d' ' -f1-3 /proc/loadavg))"
}
report authorize_per_s "$(median "${auth[baseline]}")" "$(median "${auth[this]}")" ">=" 0.90
report receipt_per_s "$(median "${receipt[baseline]}")" "$(median "${receipt[this]}")" ">=" 0.90
report authorize_cpu_us "$(median "${auth_cpu[baseline]}")" "$(median "${auth_cpu[this]}")" "<=" 1.10
report receipt_cpu_us "$(median "${receipt_cpu[baseline]}")" "$(median "${receipt_cpu[this]}")" "<=" 1.10
