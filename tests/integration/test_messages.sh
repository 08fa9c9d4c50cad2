#!/usr/bin/env bash
# test_messages.sh - the words a user reads, through the real binaries:
#   - /authorize with the only node not yet verified: the no_capacity
#     message says "not verified yet" and what to do (not "busy");
#   - a worker pointed at an engine of another kind (--engine vllm= at a
#     llama.cpp server): the log names the real cause and the kind;
#   - `troop chat --max-tokens N` limits the answer;
#   - `troop transactions` notes show what was measured and the rounding,
#     and --before pages back to older movements.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init

# 1. a coordinator that wants verified nodes, a worker that never proves
log=$CHAIN_TMP/coordinator-strict.log
"$TROOP" coordinator --listen 127.0.0.1:0 --data-dir "$CHAIN_TMP/coord-strict" >"$log" 2>&1 &
CHAIN_PIDS+=($!)
port=$(chain_port_from_log "$log" coordinator_started $!) || exit 1
COORD_URL=http://127.0.0.1:$port
chain_sim a
SIM_A=$SIM_PORT
chain_worker a "ollama=http://127.0.0.1:$SIM_PORT" --donate always --no-verify
chain_wait_nodes llama3:8b 1
chain_troop chat -m llama3:8b "hello" >/dev/null 2>"$CHAIN_TMP/chat.err"
grep -q "not verified yet" "$CHAIN_TMP/chat.err" ||
	chain_fail "no 'not verified yet' in: $(cat "$CHAIN_TMP/chat.err")"
grep -q "busy" "$CHAIN_TMP/chat.err" && chain_fail "an unverified node called busy: $(cat "$CHAIN_TMP/chat.err")"
kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null

# 2. the wrong engine kind
chain_sim b --version-kind llamacpp
chain_worker b "vllm=http://127.0.0.1:$SIM_PORT" --donate always --no-verify
wlog=$CHAIN_TMP/worker-b.log
grep -q "not as this kind of engine" "$wlog" || { chain_fail "no wrong-kind hint"; cat "$wlog"; }
grep -q "did not answer as the kind given" "$wlog" || { chain_fail "no_models hint"; cat "$wlog"; }
grep -q "serve no model yet" "$wlog" && chain_fail "the misleading 'no model yet' hint"
kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null

# 3. --max-tokens, on a coordinator that takes unverified nodes
chain_coordinator --allow-unverified
chain_worker c "ollama=http://127.0.0.1:$SIM_A" --donate always --no-verify
chain_wait_nodes llama3:8b 1
for i in 1 2 3; do
	out=$(chain_troop chat -m llama3:8b --max-tokens 5 "question $i" 2>"$CHAIN_TMP/chat.err") ||
		{ chain_fail "chat $i failed: $(cat "$CHAIN_TMP/chat.err")"; continue; }
	n=$(echo "$out" | wc -w)
	[ "$n" = 5 ] || chain_fail "--max-tokens 5 gave $n words: $out"
done

# 4. transactions: readable rounding, and paging with --before
tx=$(chain_troop transactions --limit 2)
echo "$tx"
echo "$tx" | grep -q "rounded up" || chain_fail "no rounding in the notes"
echo "$tx" | grep -Eq "[0-9]+ ms served|[0-9.]+ s served|for [0-9]+ ms|for [0-9.]+ s" || chain_fail "no measured duration"
echo "$tx" | grep -q "0.0 s" && chain_fail "a duration shown as 0.0 s"
cursor=$(echo "$tx" | sed -n "s/.*'troop transactions --before \([0-9]*\)'.*/\1/p")
[ -n "$cursor" ] || chain_fail "no --before hint"
older=$(chain_troop transactions --limit 500 --before "$cursor")
first=$(echo "$older" | awk 'NR==2 {print $1}')
[ -n "$first" ] && [ "$first" -lt "$cursor" ] || chain_fail "--before $cursor listed $first"
echo "$older" | grep -q "starter credits" || chain_fail "the oldest movement is missing: $older"
[ "$CHAIN_FAILS" -eq 0 ]
