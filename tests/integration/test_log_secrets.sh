#!/usr/bin/env bash
# test_log_secrets.sh - no secret reaches a log.  A whole troop on loopback
# (coordinator, engine simulator, worker, `troop up`) runs at debug level;
# a streamed and a plain completion, a refused forged ticket and a signed
# CLI call go through it.  Then every log line is searched for what must
# never be there: any compact JWS (tickets), a Bearer credential, the
# secret keys of every identity and of the coordinator's ticket key, the
# RFC 9421 signature values, and the prompt itself (prompts are the
# users', not the operators').
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init
export TROOP_LOG_LEVEL=debug
PROMPT="the-secret-prompt-words"
MODEL=llama3:8b

chain_coordinator
chain_sim a
chain_worker w "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL"

for stream in true false; do
	code=$(curl -s -o "$CHAIN_TMP/reply-$stream" -w '%{http_code}' "$UP_URL/v1/chat/completions" \
		-H 'Content-Type: application/json' \
		-d "{\"model\":\"$MODEL\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}")
	[ "$code" = 200 ] || chain_fail "completion (stream=$stream) answered $code"
done
# a forged ticket at the worker: the refusal is logged, the token must not be
FORGED="eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.Zm9yZ2VkLXNpZ25hdHVyZQ"
curl -s -o /dev/null "http://127.0.0.1:$WORKER_PORT/v1/chat/completions" \
	-H "Authorization: Bearer $FORGED" -H 'Content-Type: application/json' \
	-d "{\"model\":\"$MODEL\",\"messages\":[]}"
chain_troop balance >/dev/null || chain_fail "troop balance failed"
sleep 0.5   # receipts and their log lines

logs=("$CHAIN_TMP"/*.log)
grep -q "level=debug\|DEBUG" "${logs[@]}" || echo "note: no debug lines were written"

leak() { # leak WHAT PATTERN (fixed string)
	if grep -F -q -- "$2" "${logs[@]}"; then
		chain_fail "$1 appears in a log:"
		grep -F -n -- "$2" "${logs[@]}" | head -3
	else
		echo "ok: no $1 in the logs"
	fi
}
if grep -E -q 'eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' "${logs[@]}"; then
	chain_fail "a compact JWS (ticket) appears in a log:"
	grep -E -n 'eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' "${logs[@]}" | head -3
else
	echo "ok: no ticket in the logs"
fi
leak "forged token" "Zm9yZ2VkLXNpZ25hdHVyZQ"
if grep -E -q -i 'bearer [A-Za-z0-9]' "${logs[@]}"; then
	chain_fail "a Bearer credential appears in a log"
	grep -E -n -i 'bearer [A-Za-z0-9]' "${logs[@]}" | head -3
else
	echo "ok: no Bearer credential in the logs"
fi
nkeys=0
while IFS= read -r -d '' key; do
	secret=$(head -c 40 "$key")
	[ -n "$secret" ] || continue
	leak "secret key of $(basename "$(dirname "$key")")/$(basename "$key")" "$secret"
	nkeys=$((nkeys + 1))
done < <(find "$CHAIN_TMP" \( -name '*.key' \) -type f -print0)
[ "$nkeys" -ge 3 ] || chain_fail "expected at least 3 key files (coordinator, worker, client), found $nkeys"
leak "signature header" "troop=:"
leak "prompt text" "$PROMPT"

chain_stop_clean "$UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
[ "$CHAIN_FAILS" -eq 0 ] || { echo "FAIL: $CHAIN_FAILS check(s) failed"; exit 1; }
echo "PASS"
