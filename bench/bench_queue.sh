#!/usr/bin/env bash
# bench_queue.sh - what the wait queue and the ticket holds cost /authorize
# when nobody waits: p50 and p99 of a closed-loop and an open-loop
# authorize phase (bench/loadgen.c) against the coordinator built before
# the queue and against this build, in one run, on the same machine.
#
#   bench/bench_queue.sh [BUILD_DIR]
#
# The "before" coordinator is built from BASE_REF (default: the merge base
# of HEAD and main; the commit before the queue) in a temporary git
# worktree, once: it is cached in BUILD_DIR/bench-base-<commit>/troop.
# Or give a binary with BASE_BIN.  Each coordinator gets a fresh SQLite
# ledger and the in-process registry, 2 server threads; the two are
# measured alternately, ROUNDS times (default 2), and the best p50/p99 of
# each is reported, so that a burst of other work on a shared machine
# does not decide the comparison.  This build runs with --max-tickets
# 100000000: loadgen's few users authorize thousands of times a second
# and never use a ticket.  Environment: LOADGEN_ARGS (extra loadgen
# options), ROUNDS, DURATION (seconds per phase, default 3), AUTH_RATE
# (open-loop authorizations/s, default 200), CONNS (closed-loop
# connections, default 4: latency, not throughput).
# Prints "RESULT ..." lines (bench/run.sh).  Exits non-zero only when it
# could not run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$PWD/$build ;; esac
die() { echo "bench_queue: $*" >&2; exit 1; }
[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -f "$build/libtroop_lib.a" ] || die "$build/libtroop_lib.a missing: build the project first"

# ---- the "before" binary --------------------------------------------------------
base_bin=${BASE_BIN:-}
if [ -z "$base_bin" ]; then
	ref=${BASE_REF:-$(git -C "$root" merge-base HEAD main 2>/dev/null || true)}
	[ -n "$ref" ] || die "no BASE_REF and no merge base with main: set BASE_REF or BASE_BIN"
	sha=$(git -C "$root" rev-parse --short=12 "$ref^{commit}") || die "bad BASE_REF $ref"
	if [ "$sha" = "$(git -C "$root" rev-parse --short=12 HEAD)" ]; then
		die "BASE_REF is HEAD itself: nothing to compare"
	fi
	base_dir=$build/bench-base-$sha
	base_bin=$base_dir/troop
	if [ ! -x "$base_bin" ]; then
		echo "building the coordinator of $sha (once) ..."
		src=$(mktemp -d /tmp/troop-bench-base.XXXXXX)
		git -C "$root" worktree add -q --detach "$src/tree" "$sha"
		trap 'git -C "$root" worktree remove --force "$src/tree" 2>/dev/null; rm -rf "$src"' EXIT
		cmake -S "$src/tree" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
		cmake --build "$src/build" -j"$(nproc)" --target troop >/dev/null
		mkdir -p "$base_dir"
		cp "$src/build/troop" "$base_bin"
		git -C "$root" worktree remove --force "$src/tree"
		rm -rf "$src"
		trap - EXIT
	fi
fi
[ -x "$base_bin" ] || die "$base_bin is not executable"

lg=$build/bench_loadgen
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
	"$root/bench/loadgen.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$lg"

export TROOP_BUILD_DIR=$build
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-queue
trap 'exit 130' INT TERM

read -r -a extra <<<"${LOADGEN_ARGS:-}"
rounds=${ROUNDS:-2}
dur=${DURATION:-3}
rate=${AUTH_RATE:-200}

# run_one LABEL BIN [FLAGS...]: one coordinator, the two authorize phases;
# appends "LABEL closed|open p50 p99" lines to $out
out=$CHAIN_TMP/figures
: >"$out"
run_one() {
	local label=$1 bin=$2 log
	shift 2
	TROOP=$bin chain_coordinator --starter-credits 1000000000000 --threads 2 \
		--node-ttl 3600 --log-level info "$@"
	log=$CHAIN_TMP/loadgen-$label-$RANDOM.log
	"$lg" --port "$COORD_PORT" --coord-pid "$COORD_PID" --duration "$dur" \
		--phases authorize,authorize-open --auth-open-rate "$rate" --conns "${CONNS:-4}" \
		${extra[@]+"${extra[@]}"} >"$log" 2>&1 || { cat "$log"; die "loadgen failed ($label)"; }
	chain_stop "$COORD_PID"
	# "authorize  closed ... p50 X ms  p99 Y ms": the phase lines
	awk -v l="$label" '
		/^ *authorize(-open)? / && /p50/ {
			kind = ($1 == "authorize-open") ? "open" : "closed"
			for (i = 1; i <= NF; i++) {
				if ($i == "p50") p50 = $(i + 1)
				if ($i == "p99") p99 = $(i + 1)
			}
			print l, kind, p50, p99
		}' "$log" >>"$out"
	grep -E '^ *authorize(-open)? ' "$log" | sed "s/^/  $label: /"
}

for r in $(seq 1 "$rounds"); do
	echo "round $r of $rounds"
	run_one before "$base_bin"
	run_one after "$build/troop" --max-tickets 1000000
done

# best of the rounds, per build and phase
python3 - "$out" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 4:
        continue
    label, kind, p50, p99 = f[0], f[1], float(f[2]), float(f[3])
    k = (label, kind)
    b = best.get(k, (p50, p99))
    best[k] = (min(b[0], p50), min(b[1], p99))
for kind in ("closed", "open"):
    b, a = best.get(("before", kind)), best.get(("after", kind))
    if not b or not a:
        print("RESULT authorize %s loop: no figures" % kind)
        continue
    print("RESULT authorize p50, %s loop, empty queue: before %.3f ms, after %.3f ms (x%.2f)"
          % (kind, b[0], a[0], a[0] / b[0] if b[0] else 0))
    print("RESULT authorize p99, %s loop, empty queue: before %.3f ms, after %.3f ms (x%.2f)"
          % (kind, b[1], a[1], a[1] / b[1] if b[1] else 0))
PY
