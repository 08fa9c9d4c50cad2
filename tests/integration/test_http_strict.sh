#!/usr/bin/env bash
# test_http_strict.sh - request smuggling shapes against the real
# coordinator, worker and `troop up` (issue 16, item 12): two different
# Content-Length headers, a Transfer-Encoding other than exactly
# "chunked", NUL bytes, folded header lines, a bad chunk size, a GET with a
# body each get 400 (JSON error shape) at once; CONNECT gets 405 at once;
# out-of-range query numbers get 400.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init

chain_coordinator
COORD_PID=${CHAIN_PIDS[0]}
chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_up main "$COORD_URL"

for target in "coordinator ${COORD_URL##*:}" "worker $WORKER_PORT" "up $UP_PORT"; do
	set -- $target
	echo "-- $1"
	python3 "$HERE/http_attack.py" strict 127.0.0.1 "$2" || chain_fail "$1: strictness"
done

echo "-- query numbers"
for q in "limit=%205" "limit=99999999999999999999" "limit=+5" "limit=5x"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "$COORD_URL/peers?$q")
	[ "$code" = 400 ] || chain_fail "GET /peers?$q: $code, want 400"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$COORD_URL/peers?limit=5")
[ "$code" = 200 ] || chain_fail "GET /peers?limit=5: $code, want 200"

# the error paths leave nothing behind (sanitizer builds report leaks here)
chain_stop_clean "$UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
chain_stop_clean "$WORKER_PID" "$CHAIN_TMP/worker-w1.log" "worker"
chain_stop_clean "$COORD_PID" "$CHAIN_TMP/coordinator1.log" "coordinator"

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
