#!/usr/bin/env bash
# test_worker_poh.sh - a worker proves its hardware by itself: started
# next to a coordinator that does NOT allow unverified nodes, it registers,
# runs the proof-of-hardware challenge on its CPU, becomes verified with a
# multiplier, and from then on /authorize hands it jobs.  `troop worker
# --benchmark` runs one challenge and prints the result.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init
CHAIN_VERIFY=1 chain_coordinator --poh-rate-limit 1 --poh-min-node-age 0
chain_sim a
chain_worker a "ollama=http://127.0.0.1:$SIM_PORT" --donate always --poh-device cpu
NODE=$(TROOP_HOME=$CHAIN_TMP/home-worker-a "$TROOP" id)
for _ in $(seq 1 200); do
	v=$(curl -s "$COORD_URL/nodes/$NODE" | python3 -c \
		'import json,sys; n=json.load(sys.stdin); print(n.get("verified"), n.get("multiplier"))' 2>/dev/null)
	case "$v" in True*) break ;; esac
	sleep 0.1
done
case "$v" in True*) echo "ok: the worker verified itself: $v" ;;
	*) chain_fail "worker not verified: $v"; tail -20 "$CHAIN_TMP/worker-a.log"; exit 1 ;; esac
grep -q poh_verified "$CHAIN_TMP/worker-a.log" || chain_fail "no poh_verified log line"
# now a ticket can name it (no --allow-unverified on this coordinator)
code=$(TROOP_HOME=$CHAIN_TMP/home-client "$TROOP" chat --coordinator "$COORD_URL" \
	-m llama3:8b "hello" >/dev/null 2>"$CHAIN_TMP/chat.err"; echo $?)
[ "$code" = 0 ] || { chain_fail "chat through the verified node failed"; cat "$CHAIN_TMP/chat.err"; }
# the benchmark command, with the worker's identity
sleep 1.1  # past the one-second challenge window of this coordinator
out=$(TROOP_HOME=$CHAIN_TMP/home-worker-a "$TROOP" worker --benchmark --coordinator "$COORD_URL" \
	--device cpu --json 2>/dev/null)
echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["verified"], r; print("ok: benchmark:", r["multiplier"])' ||
	chain_fail "troop worker --benchmark did not verify: $out"
[ "$CHAIN_FAILS" -eq 0 ]
