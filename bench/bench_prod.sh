#!/usr/bin/env bash
# bench_prod.sh - the coordinator's throughput on its production backends
# next to its embedded ones, in one run (issue 10's benchmark): heartbeats/s
# and authorizations/s (closed loop, signed requests, bench/loadgen.c) with
#   embedded    a SQLite ledger (WAL, synchronous=FULL) and the
#               in-process registry
#   production  a PostgreSQL ledger and a Redis registry, private servers
#               started here by tests/pg/start-services.sh on loopback
# and the ratio production / embedded (target: at least 1/3 for each).
#
#   bench/bench_prod.sh [BUILD_DIR] [-- loadgen options]
#
# BUILD_DIR (default: $BUILD_DIR, else build) must hold an optimised
# `troop` and libtroop_lib.a.  Each run starts a fresh coordinator on a
# fresh ledger (a new SQLite file / a new PostgreSQL database and Redis
# prefix) with the flags bench_coordinator.sh uses:
#   --allow-unverified --starter-credits 1000000000000 --node-ttl 3600
#   --threads T
# and runs `loadgen --phases heartbeat,authorize` against it.
#
# Server threads: with the embedded backends a coordinator thread is busy
# on the CPU the whole time, with PostgreSQL and Redis it mostly waits for
# round trips, so the two do best at different thread counts.  Each
# backend runs at every count in THREADS (default "2 4"), both with the
# same flags at each count; the table shows each count, and the verdict
# compares each backend at its best count.  The machine is shared and
# noisy, so the runs take turns (E P E P ...), ROUNDS times per count, and
# the best figure of each is kept.  Environment:
#   THREADS         coordinator --threads values to run ("2 4")
#   ROUNDS          rounds per thread count (2)
#   LOADGEN_ARGS    extra loadgen options (e.g. "--duration 2")
#   TROOP_PG_FSYNC  "on" runs PostgreSQL with fsync (default off, as tests do)
# Prints "RESULT ..." lines (bench/run.sh collects them).  Exits non-zero
# only when the benchmark could not run; a missed target is reported.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	build=$1
	shift
fi
[ "${1:-}" = "--" ] && shift
case $build in /*) ;; *) build=$PWD/$build ;; esac
rounds=${ROUNDS:-2}
read -r -a thread_list <<<"${THREADS:-2 4}"

die() { echo "bench_prod: $*" >&2; exit 1; }

[ -x "$build/troop" ] || die "$build/troop missing: build the project first (make)"
[ -f "$build/libtroop_lib.a" ] || die "$build/libtroop_lib.a missing: build the project first"
command -v psql >/dev/null 2>&1 || die "psql missing: scripts/install-deps.sh test"

lg=$build/bench_loadgen
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src/lib" -I"$root/src" \
	"$root/bench/loadgen.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$lg"

# the tests' harness: each coordinator on 127.0.0.1:0 with the port from
# its log, private PostgreSQL and Redis, all stopped and removed at exit
export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench-prod
cpid=
stop_coord() {
	[ -n "$cpid" ] || return 0
	chain_stop "$cpid"
	cpid=
}
trap 'exit 130' INT TERM

chain_services svc
pg_base=$DATABASE_URL
redis_base=$REDIS_URL
unset DATABASE_URL REDIS_URL TROOP_DATABASE_URL TROOP_REDIS_URL
echo "servers: PostgreSQL $(psql -qtA "$pg_base" -c 'SHOW server_version') (fsync=$(psql -qtA \
"$pg_base" -c 'SHOW fsync')) at $pg_base, Redis $(redis-cli -u "$redis_base" info server 2>/dev/null |
	sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p') at $redis_base"
echo "machine: $(nproc) cores; coordinator --threads ${thread_list[*]}; $rounds round(s) of each"

read -r -a extra <<<"${LOADGEN_ARGS:-}"
extra+=("$@")   # options after --

hz=$(getconf CLK_TCK)
# CPU ticks (user + system) used so far by the given processes
ticks() {
	local s=0 p t
	for p in "$@"; do
		t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) && s=$((s + t))
	done
	echo "$s"
}
# Redis and PostgreSQL: the redis-server, the postmaster and its children
server_pids() {
	local pm
	cat "$SVC_DIR/redis/redis.pid" 2>/dev/null
	pm=$(head -n1 "$SVC_DIR/pg/data/postmaster.pid" 2>/dev/null) || return 0
	echo "$pm"
	pgrep -P "$pm" || true
}

# run_one KIND THREADS N: one coordinator on a fresh ledger; loadgen runs
# its heartbeat phase, then (a second run) its authorize phase against it.
# Sets HB and AUTH (req/s) and CPU_HB_C, CPU_HB_S, CPU_AUTH_C, CPU_AUTH_S:
# microseconds of CPU per request of the coordinator (_C) and of Redis +
# PostgreSQL (_S), counted over the whole loadgen run (its untimed set-up
# requests included)
run_one() {
	local kind=$1 threads=$2 n=$3 port= backend=() out ph
	local c0 s0 c1 s1 reqs rps errs
	if [ "$kind" = prod ]; then
		psql -q -v ON_ERROR_STOP=1 "$pg_base" -c "CREATE DATABASE bench_${threads}_$n" >/dev/null
		backend=(--database-url "${pg_base%/*}/bench_${threads}_$n"
			--registry-url "$redis_base/0?prefix=bench${threads}_$n:")
	fi
	chain_coordinator --starter-credits 1000000000000 --threads "$threads" \
		--node-ttl 3600 --log-level info ${backend[@]+"${backend[@]}"}
	cpid=$COORD_PID
	port=$COORD_PORT
	echo "--- --threads $threads, round $n: $kind ($(sed -n \
		's/.*\(ledger=[a-z]* registry=[a-z]*\).*/\1/p' "$COORD_LOG" | head -n1)), port $port"
	for ph in heartbeat authorize; do
		c0=$(ticks "$cpid")
		s0=$(ticks $(server_pids))
		if ! out=$("$lg" --port "$port" --coord-pid "$cpid" --phases "$ph" \
			${extra[@]+"${extra[@]}"} 2>&1); then
			echo "$out" | tail -n 20 >&2
			tail -n 20 "$COORD_LOG" >&2 || true
			die "loadgen ($ph) failed against the $kind coordinator"
		fi
		c1=$(ticks "$cpid")
		s1=$(ticks $(server_pids))
		echo "$out" | grep -E "^  $ph |CPU: coordinator" || true
		# every request sent, set-up included: the "N req" of each phase line
		reqs=$(echo "$out" | awk '/ (open|closed) +[0-9]+ conns +[0-9]+ req / {
			for (i = 1; i < NF; i++) if ($(i + 1) == "req") s += $i } END { print s + 0 }')
		[ "$ph" = heartbeat ] && rps=$(echo "$out" |
			sed -n 's/^RESULT coordinator heartbeats\/s (closed loop): \([0-9.]*\).*/\1/p')
		[ "$ph" = authorize ] && rps=$(echo "$out" |
			sed -n 's/^RESULT coordinator authorizations\/s (closed loop): \([0-9.]*\).*/\1/p')
		errs=$(echo "$out" | sed -n 's/^RESULT coordinator errors in timed phases: \([0-9]*\).*/\1/p')
		[ -n "$rps" ] && [ "${reqs:-0}" -gt 0 ] ||
			{ echo "$out" | tail -n 20 >&2; die "no figures from loadgen"; }
		kill -0 "$cpid" 2>/dev/null || die "the $kind coordinator exited during the benchmark"
		local cc ss
		cc=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }')
		ss=$(awk -v t=$((s1 - s0)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }')
		echo "    $ph: $rps req/s, $errs errors; CPU per request: coordinator $cc us," \
			"Redis+PostgreSQL $ss us ($reqs requests)"
		if [ "$ph" = heartbeat ]; then
			HB=$rps CPU_HB_C=$cc CPU_HB_S=$ss
		else
			AUTH=$rps CPU_AUTH_C=$cc CPU_AUTH_S=$ss
		fi
	done
	echo "    coordinator log: $(grep -c ' WARN \| ERROR ' "$COORD_LOG" || true) warnings/errors"
	stop_coord
}

max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
ratio() { awk -v p="$1" -v e="$2" 'BEGIN { printf "%.2f", (e > 0) ? p / e : 0 }'; }
verdict() { awk -v r="$1" 'BEGIN { print (r >= 1/3) ? "PASS" : "MISS" }'; }
declare -A best cpu
for t in "${thread_list[@]}"; do
	for k in e_hb e_auth p_hb p_auth; do best[$k$t]=0; done
	for n in $(seq 1 "$rounds"); do
		run_one embedded "$t" "$n"
		best[e_hb$t]=$(max "${best[e_hb$t]}" "$HB")
		best[e_auth$t]=$(max "${best[e_auth$t]}" "$AUTH")
		cpu[e_hb_c]=$(min "$CPU_HB_C" "${cpu[e_hb_c]:-}")
		cpu[e_auth_c]=$(min "$CPU_AUTH_C" "${cpu[e_auth_c]:-}")
		run_one prod "$t" "$n"
		best[p_hb$t]=$(max "${best[p_hb$t]}" "$HB")
		best[p_auth$t]=$(max "${best[p_auth$t]}" "$AUTH")
		cpu[p_hb_c]=$(min "$CPU_HB_C" "${cpu[p_hb_c]:-}")
		cpu[p_auth_c]=$(min "$CPU_AUTH_C" "${cpu[p_auth_c]:-}")
		cpu[p_hb_s]=$(min "$CPU_HB_S" "${cpu[p_hb_s]:-}")
		cpu[p_auth_s]=$(min "$CPU_AUTH_S" "${cpu[p_auth_s]:-}")
	done
done

e_hb=0 e_auth=0 p_hb=0 p_auth=0
echo
printf '%-28s %14s %17s %7s\n' "best of $rounds, req/s" "SQLite+memory" "PostgreSQL+Redis" "ratio"
for t in "${thread_list[@]}"; do
	printf '%-28s %14.0f %17.0f %7s\n' "heartbeats, --threads $t" "${best[e_hb$t]}" \
		"${best[p_hb$t]}" "$(ratio "${best[p_hb$t]}" "${best[e_hb$t]}")"
	printf '%-28s %14.0f %17.0f %7s\n' "authorizations, --threads $t" "${best[e_auth$t]}" \
		"${best[p_auth$t]}" "$(ratio "${best[p_auth$t]}" "${best[e_auth$t]}")"
	e_hb=$(max "$e_hb" "${best[e_hb$t]}")
	e_auth=$(max "$e_auth" "${best[e_auth$t]}")
	p_hb=$(max "$p_hb" "${best[p_hb$t]}")
	p_auth=$(max "$p_auth" "${best[p_auth$t]}")
done
r_hb=$(ratio "$p_hb" "$e_hb")
r_auth=$(ratio "$p_auth" "$e_auth")
printf '%-28s %14.0f %17.0f %7s   %s\n' "heartbeats, best count" "$e_hb" "$p_hb" "$r_hb" \
	"$(verdict "$r_hb") (target >= 0.33)"
printf '%-28s %14.0f %17.0f %7s   %s\n' "authorizations, best count" "$e_auth" "$p_auth" \
	"$r_auth" "$(verdict "$r_auth") (target >= 0.33)"
echo
echo "CPU per request (lowest seen; all processes share this machine's $(nproc) cores):"
printf '%-28s %14s %17s\n' "" "SQLite+memory" "PostgreSQL+Redis"
printf '%-28s %11s us %14s us   (+ %s us in Redis and PostgreSQL)\n' "heartbeat, coordinator" \
	"${cpu[e_hb_c]}" "${cpu[p_hb_c]}" "${cpu[p_hb_s]}"
printf '%-28s %11s us %14s us   (+ %s us in Redis and PostgreSQL)\n' "authorize, coordinator" \
	"${cpu[e_auth_c]}" "${cpu[p_auth_c]}" "${cpu[p_auth_s]}"
echo "RESULT prod CPU per heartbeat: coordinator ${cpu[p_hb_c]} us + servers ${cpu[p_hb_s]} us" \
	"(PostgreSQL+Redis), coordinator ${cpu[e_hb_c]} us (SQLite+memory)"
echo "RESULT prod CPU per authorization: coordinator ${cpu[p_auth_c]} us + servers" \
	"${cpu[p_auth_s]} us (PostgreSQL+Redis), coordinator ${cpu[e_auth_c]} us (SQLite+memory)"
echo "RESULT prod heartbeats/s: PostgreSQL+Redis $p_hb, SQLite+memory $e_hb, ratio $r_hb" \
	"(target >= 0.33) $(verdict "$r_hb")"
echo "RESULT prod authorizations/s: PostgreSQL+Redis $p_auth, SQLite+memory $e_auth," \
	"ratio $r_auth (target >= 0.33) $(verdict "$r_auth")"
