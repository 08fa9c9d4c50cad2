#!/usr/bin/env bash
# bench_durable.sh - durable authorizations on SQLite (issue 20, item 1):
# /authorize throughput and latency of this build's coordinator with its
# ledger as it ships (synchronous=FULL, group commit) next to the same
# binary run the old way, in one run on one machine:
#   before    synchronous=normal in the database URL, --ledger-batch 0
#             (each reservation its own transaction; a power cut may lose
#             the last ones)
#   full      synchronous=FULL, --ledger-batch 0 (durable, one fsync per
#             reservation: what durability costs without group commit)
#   after     synchronous=FULL, --ledger-batch 64 (durable, group commit)
#   pg        PostgreSQL (fsync=on, synchronous_commit=on) and Redis, from
#             tests/pg/start-services.sh, --ledger-batch 64: the ratio to
#             SQLite (only where PostgreSQL and Redis are installed)
# The checkpoints run on their background thread on every SQLite side
# (this build has no other way).
#
#   bench/bench_durable.sh [BUILD_DIR]
#
# Each round starts a fresh coordinator per side (--threads COORD_THREADS,
# --allow-unverified, no ticket or slot limits) and runs bench/loadgen.c
# twice against it: the closed loop (CONNS connections authorizing as fast
# as they are answered: the capacity), then the open loop at half of that
# side's capacity (p50 and p99 measured from each request's scheduled
# send time), and the coordinator's CPU time per authorization in the
# closed loop (user + system, from /proc: on a shared machine the rate
# follows the CPU the coordinator gets, the CPU per authorization much
# less).  The figure of each side is the median of ROUNDS rounds; the load
# average is printed with every round.  Environment:
#   ROUNDS (3)  DURATION seconds per phase (3)  CONNS (64)
#   COORD_THREADS server threads (64: a reservation waits for its commit
#                 on its server thread; the writer batches what waits)
#   SIDES         the sides to run, of "before full after pg" (all; pg
#                 only where PostgreSQL and Redis are installed)
# Prints "RESULT ..." lines (bench/run.sh collects them): each side's
# figures, the ratio after / before, and the targets (>= 10000
# authorizations/s durable; p99 < 10 ms at half of that).  Exits non-zero
# only when it could not run; a missed target is reported, not failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$PWD/$build ;; esac
rounds=${ROUNDS:-3}
duration=${DURATION:-3}
conns=${CONNS:-64}
threads=${COORD_THREADS:-64}

die() { echo "bench_durable: $*" >&2; exit 1; }

[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -f "$build/libtroop_lib.a" ] || die "$build/libtroop_lib.a missing: build the project first"

lg=$build/bench_loadgen
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
	"$root/bench/loadgen.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$lg"

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-durable
trap 'exit 130' INT TERM

declare -A cap p50 p99 cpu
want_pg= sides=()
for s in ${SIDES:-before full after pg}; do
	case $s in
	before | full | after) sides+=("$s") ;;
	pg) want_pg=1 ;;
	*) die "unknown side '$s' in SIDES" ;;
	esac
done
pg_base= redis_base=
if [ -n "$want_pg" ] && command -v psql >/dev/null 2>&1 &&
	env_out=$(TROOP_PG_FSYNC=on "$root/tests/pg/start-services.sh" "$CHAIN_TMP/svc" 2>/dev/null); then
	eval "$env_out"
	pg_base=$DATABASE_URL redis_base=$REDIS_URL
	unset DATABASE_URL REDIS_URL TROOP_DATABASE_URL TROOP_REDIS_URL
	SVC_DIR=$CHAIN_TMP/svc   # troop_chain.sh stops them at exit
	sides+=(pg)
elif [ -n "$want_pg" ]; then
	echo "(PostgreSQL or Redis not available: no pg side)"
fi
[ ${#sides[@]} -gt 0 ] || die "no side to run"
# one round of one side: its figures appended to cap[side], p50[side], p99[side]
run_side() {
	local side=$1 sync=full batch=64 dir out rate c o50 o99 e1 e2 db url reg us
	case $side in
	before) sync=normal batch=0 ;;
	full) batch=0 ;;
	esac
	dir=$CHAIN_TMP/db-$side-$RANDOM
	mkdir -p "$dir"
	chmod 700 "$dir"
	url="sqlite:$dir/ledger.db?synchronous=$sync" reg=
	if [ "$side" = pg ]; then
		db=bench_${RANDOM}_$RANDOM
		psql -q -v ON_ERROR_STOP=1 "$pg_base" -c "CREATE DATABASE $db" >/dev/null ||
			die "could not create database $db"
		url=${pg_base%/*}/$db reg="$redis_base/0?prefix=$db:"
	fi
	chain_coordinator --database-url "$url" ${reg:+--registry-url "$reg"} \
		--ledger-batch "$batch" --threads "$threads" --starter-credits 1000000000000 \
		--max-tickets 1000000 --max-jobs-other 0 --node-ttl 3600
	out=$("$lg" --port "$COORD_PORT" --phases authorize --duration "$duration" \
		--conns "$conns" --users 1000 --coord-pid "$COORD_PID") ||
		{ echo "$out"; tail -n 20 "$COORD_LOG" >&2; die "loadgen failed on $side"; }
	c=$(sed -n 's/^RESULT coordinator authorizations\/s (closed loop): \([0-9.]*\).*/\1/p' <<<"$out")
	e1=$(sed -n 's/^RESULT coordinator errors in timed phases: \([0-9]*\).*/\1/p' <<<"$out")
	us=$(sed -n 's/.*CPU: coordinator [0-9.]* cores (\([0-9.]*\) us per request).*/\1/p' <<<"$out" | head -n1)
	[ -n "$c" ] || { echo "$out"; die "no authorization rate from loadgen on $side"; }
	rate=$(awk -v c="$c" 'BEGIN {r = c / 2; if (r < 1) r = 1; printf "%.0f", r}')
	out=$("$lg" --port "$COORD_PORT" --phases authorize-open --duration "$duration" \
		--conns "$conns" --users 1000 --auth-open-rate "$rate") ||
		{ echo "$out"; tail -n 20 "$COORD_LOG" >&2; die "loadgen (open loop) failed on $side"; }
	o50=$(awk '$1 == "authorize-open" {for (i = 1; i < NF; i++) if ($i == "p50") print $(i + 1)}' <<<"$out" | head -n1)
	o99=$(sed -n 's/^RESULT coordinator authorize p99 at open-loop rate: \([0-9.]*\).*/\1/p' <<<"$out")
	e2=$(sed -n 's/^RESULT coordinator errors in timed phases: \([0-9]*\).*/\1/p' <<<"$out")
	chain_stop "$COORD_PID"
	rm -rf "$dir"
	cap[$side]+="$c "
	p50[$side]+="${o50:-nan} "
	p99[$side]+="${o99:-nan} "
	cpu[$side]+="${us:-nan} "
	printf '  %-7s %7s authorizations/s, %4s us CPU each; at %6s/s: p50 %6s ms, p99 %6s ms; errors %s+%s  (load %s)\n' \
		"$side" "$c" "${us:-?}" "$rate" "${o50:-?}" "${o99:-?}" "${e1:-?}" "${e2:-?}" \
		"$(cut -d' ' -f1-3 /proc/loadavg)"
}

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "durable authorizations: $rounds rounds of $duration s per phase, $conns connections," \
	"--threads $threads, $(nproc) cores"
for r in $(seq 1 "$rounds"); do
	echo "round $r:"
	# rotate who goes first: a machine getting busier hurts all alike
	for k in "${!sides[@]}"; do
		run_side "${sides[$(((k + r) % ${#sides[@]}))]}"
	done
done
for s in "${sides[@]}"; do
	echo "RESULT durable $s authorizations_per_s $(median "${cap[$s]}") cpu_us_per_authorization" \
		"$(median "${cpu[$s]}") p50_ms $(median "${p50[$s]}") p99_ms $(median "${p99[$s]}")" \
		"(medians of $rounds;" \
		"load $(cut -d' ' -f1-3 /proc/loadavg))"
done
[ -n "${cap[after]:-}" ] || exit 0   # the ratios and targets are the after side's
b=$(median "${cap[before]:-nan}") a=$(median "${cap[after]}") f=$(median "${cap[full]:-nan}")
a99=$(median "${p99[after]}")
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {if (y + 0 > 0) printf "%.2f", x / y; else print "-"}'; }
echo "RESULT durable authorizations_per_s after/before ratio $(ratio "$a" "$b")" \
	"after/full ratio $(ratio "$a" "$f")"
if [ -n "$pg_base" ]; then
	p=$(median "${cap[pg]}")
	echo "RESULT durable PostgreSQL+Redis / SQLite authorizations_per_s ratio" \
		"$(awk -v p="$p" -v a="$a" 'BEGIN {printf "%.2f", p / a}') ($p / $a)"
fi
verdict() { awk -v v="$1" -v l="$3" -v c="$2" 'BEGIN {print ((c == ">=" ? v >= l : v < l) ? "ok" : "MISSED")}'; }
echo "RESULT durable target authorizations_per_s >= 10000 (synchronous=FULL): $a $(verdict "$a" ">=" 10000)"
echo "RESULT durable target /authorize p99 < 10 ms at half of capacity: $a99 $(verdict "$a99" "<" 10)"
