#!/usr/bin/env bash
# test_worker_poh_restart.sh - a verified worker restarted soon after its
# proof: the coordinator refuses a new challenge for --poh-rate-limit
# seconds (429) but keeps the node verified, so the worker says so once at
# info level ("poh_deferred") and logs no poh_failed warning; the node
# stays verified.  poh_verified is logged exactly once per proof.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init
log=$CHAIN_TMP/coordinator.log
"$TROOP" coordinator --listen 127.0.0.1:0 --data-dir "$CHAIN_TMP/coord" \
	--poh-rate-limit 600 --poh-min-node-age 0 >"$log" 2>&1 &
CHAIN_PIDS+=($!)
port=$(chain_port_from_log "$log" coordinator_started $!) || exit 1
COORD_URL=http://127.0.0.1:$port
chain_sim a
chain_worker a "ollama=http://127.0.0.1:$SIM_PORT" --donate always --poh-device cpu
wlog=$CHAIN_TMP/worker-a.log
NODE=$(TROOP_HOME=$CHAIN_TMP/home-worker-a "$TROOP" id)
verified() {
	curl -s "$COORD_URL/nodes/$NODE" | python3 -c \
		'import json,sys; print(json.load(sys.stdin).get("verified"))' 2>/dev/null
}
for _ in $(seq 1 300); do
	[ "$(verified)" = True ] && break
	sleep 0.1
done
[ "$(verified)" = True ] || { chain_fail "worker not verified"; tail -20 "$wlog"; exit 1; }
n=$(grep -c poh_verified "$wlog")
[ "$n" = 1 ] || chain_fail "poh_verified logged $n times"
chain_stop_clean "$WORKER_PID" "$wlog" "worker"
mv "$wlog" "$CHAIN_TMP/worker-a.first.log"
chain_worker a "ollama=http://127.0.0.1:$SIM_PORT" --donate always --poh-device cpu
for _ in $(seq 1 300); do
	grep -q "poh_deferred\|poh_failed" "$wlog" && break
	sleep 0.1
done
grep -q poh_deferred "$wlog" || { chain_fail "no poh_deferred line after a quick restart"; tail -20 "$wlog"; }
grep -q poh_failed "$wlog" && { chain_fail "poh_failed on a quick restart"; grep poh_ "$wlog"; }
[ "$(verified)" = True ] || chain_fail "the node lost its verification"
grep poh_deferred "$wlog"
chain_stop_clean "$WORKER_PID" "$wlog" "worker"
[ "$CHAIN_FAILS" -eq 0 ]
