#!/usr/bin/env bash
# test_busy_burst.sh - a node that a burst filled is free again the moment
# its jobs end.  A worker with 4 slots gets 4 concurrent requests (about
# 0.4 s each); once they have all answered, one more request must be
# served within a second (the receipts' way to the coordinator), not
# refused with 503 "every node is busy" until the node's next heartbeat.  Then `troop nodes --json` must not show the node BUSY with no
# job running.  Repeated, since the race is a timing one.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init

MODEL=llama3:8b
body='{"model":"'$MODEL'","max_tokens":8,"messages":[{"role":"user","content":"burst"}]}'

chain_coordinator
chain_sim a --tokens-per-second 20
chain_worker w "vllm=http://127.0.0.1:$SIM_PORT" --max-jobs 4 --donate always
chain_wait_nodes "$MODEL" 1
# --wait 0: a node wrongly seen as full answers 503 at once instead of queueing
chain_up main "$COORD_URL" --wait 0

post() { # post OUTFILE: the status code
	curl -s -o "$1" -w '%{http_code}' -m 30 -H 'Content-Type: application/json' \
		-d "$body" "$UP_URL/v1/chat/completions"
}

ROUNDS=8
for round in $(seq 1 $ROUNDS); do
	pids=""
	for i in 1 2 3 4; do
		( code=$(post "$CHAIN_TMP/burst-$round-$i.json"); echo "$code" >"$CHAIN_TMP/burst-$round-$i.code" ) &
		pids="$pids $!"
	done
	wait $pids
	for i in 1 2 3 4; do
		c=$(cat "$CHAIN_TMP/burst-$round-$i.code")
		[ "$c" = 200 ] || chain_fail "round $round: burst request $i got $c: $(head -c 300 "$CHAIN_TMP/burst-$round-$i.json")"
	done
	# the burst is over: the node's 4 slots are free again as soon as the
	# worker's receipts arrive, a few milliseconds after the answers (on a
	# loaded machine they may come after the next request): a 503 is tried
	# again for up to 1 s, far less than the heartbeat interval (10 s) that
	# freed the slots before
	for try in $(seq 1 10); do
		c=$(post "$CHAIN_TMP/after-$round.json")
		[ "$c" = 503 ] || break
		sleep 0.1
	done
	[ "$try" -gt 1 ] && [ "$c" = 200 ] && echo "round $round: the request after the burst was served at try $try"
	[ "$c" = 200 ] || chain_fail "round $round: the request right after the burst got $c (try $try): $(head -c 300 "$CHAIN_TMP/after-$round.json")"
	# and nobody is shown a node BUSY with nothing running
	chain_troop nodes --json >"$CHAIN_TMP/nodes-$round.json" 2>/dev/null
	python3 - "$CHAIN_TMP/nodes-$round.json" <<'PY' || chain_fail "round $round: $(cat "$CHAIN_TMP/nodes-$round.json" | head -c 400)"
import json, sys
nodes = json.load(open(sys.argv[1]))
if isinstance(nodes, dict):
    nodes = nodes.get("nodes", [])
for n in nodes:
    load = n.get("load", {})
    if n.get("status") == "BUSY" and load.get("active_jobs", 0) < load.get("max_jobs", 0):
        print("node shown BUSY with %s of %s slots taken" % (load.get("active_jobs"), load.get("max_jobs")))
        sys.exit(1)
PY
	sleep 1.2
done
[ "$CHAIN_FAILS" -eq 0 ] && echo "ok: $ROUNDS bursts, the node free again each time" 
[ "$CHAIN_FAILS" -eq 0 ]
