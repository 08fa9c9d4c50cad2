#!/usr/bin/env bash
# test_slowloris.sh - stalled and trickling clients against the real
# coordinator, worker and `troop up` (issue 16, item 4).
#   - 5,000 connections from 127.0.0.1 that send part of a request head and
#     stall (more than the coordinator's connection limit, which comes from
#     its open-file limit, 2048 here): /health from 127.0.0.2 still answers
#     within 100 ms, every time; the same against the worker and `troop up`
#     (their limits from the usual open-file limit: the per-address limit
#     closes the extra connections);
#   - a client sending one byte a second is closed at the head deadline
#     (10 s), not kept open by each byte, by all three roles.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# the coordinator with a low open-file limit (soft and hard)
CHAIN_WRAP="prlimit --nofile=2048:2048 --" chain_coordinator

chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_up main "$COORD_URL"

# stall NAME PORT: 5000 stalled connections from 127.0.0.1; /health from
# 127.0.0.2 must answer within 100 ms, 20 times out of 20
stall() {
	local name=$1 port=$2 worst=0 i t code ms
	echo "-- $name: 5000 stalled connections from 127.0.0.1"
	python3 "$HERE/http_attack.py" stall 127.0.0.1 "$port" 5000 6 >"$CHAIN_TMP/stall-$name.out" 2>&1 &
	local spid=$!
	for i in $(seq 1 200); do
		grep -q "^held" "$CHAIN_TMP/stall-$name.out" && break
		sleep 0.05
	done
	cat "$CHAIN_TMP/stall-$name.out"
	for i in $(seq 1 20); do
		t=$(curl -s -o /dev/null --interface 127.0.0.2 --max-time 5 \
			-w '%{http_code} %{time_total}' "http://127.0.0.1:$port/health")
		code=${t% *}
		ms=$(python3 -c "print(int(float('${t#* }') * 1000))")
		[ "$code" = 200 ] || chain_fail "$name: /health from 127.0.0.2 during the stall: HTTP $code"
		[ "$ms" -gt "$worst" ] && worst=$ms
	done
	echo "$name: slowest /health from 127.0.0.2 of 20: $worst ms"
	[ "$worst" -lt 100 ] || chain_fail "$name: /health from 127.0.0.2 took $worst ms (want < 100)"
	wait $spid
}
stall coordinator "$COORD_PORT"
grep -q "conn_limit" "$COORD_LOG" || chain_fail "no conn_limit line in the log"
n=$(grep -c "conn_limit" "$COORD_LOG")
[ "$n" -le 5 ] || chain_fail "$n conn_limit log lines: want them rate-limited"
# out of descriptors, accept() must neither spin nor log each failure
size=$(stat -c %s "$COORD_LOG")
[ "$size" -lt 1000000 ] || chain_fail "the coordinator wrote $size bytes of log during the stall"
stall worker "$WORKER_PORT"
stall up "$UP_PORT"

echo "-- one byte a second"
sleep 1         # the stalled connections are gone
for target in "coordinator $COORD_PORT" "worker $WORKER_PORT" "up $UP_PORT"; do
	set -- $target
	python3 "$HERE/http_attack.py" trickle 127.0.0.1 "$2" >"$CHAIN_TMP/trickle-$1.out" 2>&1 &
done
wait_ok=1
for target in coordinator worker up; do
	for i in $(seq 1 400); do
		grep -q "closed after" "$CHAIN_TMP/trickle-$target.out" 2>/dev/null && break
		sleep 0.05
	done
	out=$(cat "$CHAIN_TMP/trickle-$target.out")
	echo "$target: $out"
	s=$(echo "$out" | sed -n 's/closed after \([0-9]*\)\..*/\1/p')
	if [ -z "$s" ] || [ "$s" -lt 9 ] || [ "$s" -gt 13 ]; then
		chain_fail "$target: a byte a second: $out (want closed at the 10 s head deadline)"
	fi
done

chain_stop_clean "$UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
chain_stop_clean "$WORKER_PID" "$CHAIN_TMP/worker-w1.log" "worker"
chain_stop_clean "$COORD_PID" "$COORD_LOG" "coordinator"

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
