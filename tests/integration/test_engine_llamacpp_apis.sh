#!/usr/bin/env bash
# test_engine_llamacpp_apis.sh - the OpenAI Responses API, the Anthropic
# Messages API and /tokenize through the whole troop against a real
# llama.cpp llama-server (built from source by
# scripts/build-llama-server.sh and cached, as in test_engine_llamacpp.sh;
# the tiny random-weight model next to it), which serves them natively:
#   - the worker's probe finds them, and passes the requests through
#     unchanged (no via= in its job lines), with the engine's key;
#   - the official SDKs (npm `openai` client.responses and
#     `@anthropic-ai/sdk` client.messages, streamed and not, their stream
#     helpers, typed errors) through `troop up` (apis_sdk.mjs);
#   - the worker reads the usage of each API's replies (its job lines say
#     usage=engine with the engine's counts);
#   - POST /tokenize and /v1/messages/count_tokens pass through;
#   - an engine error on /v1/messages comes in the Anthropic shape, and an
#     image (no vision projector) is refused before the engine in that shape;
#   - the jobs are settled and charged.
# Exit 77 (skipped) only when llama-server cannot be built on this machine.
# labels: engine
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null ||
	{ echo "FAIL: node and npm are needed (scripts/install-deps.sh test)"; exit 1; }
. "$HERE/troop_chain.sh"
ok() { echo "ok: $*"; }

. "$HERE/llama_env.sh"

NODEDIR=$BUILD/node-apis-engine
mkdir -p "$NODEDIR"
if [ ! -f "$NODEDIR/node_modules/openai/package.json" ] ||
	[ ! -f "$NODEDIR/node_modules/@anthropic-ai/sdk/package.json" ]; then
	echo '{"name":"troop-apis-engine-test","private":true,"type":"module"}' >"$NODEDIR/package.json"
	(cd "$NODEDIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
		openai@6 @anthropic-ai/sdk >"$NODEDIR/npm-install.log" 2>&1) ||
		{ echo "FAIL: npm install of the SDKs failed: $(tail -5 "$NODEDIR/npm-install.log")"; exit 1; }
fi
cp "$HERE/apis_sdk.mjs" "$NODEDIR/"

PORT=$(free_port)
KEY=troop-engine-key-$RANDOM$RANDOM
start_llama apis "$PORT" -c 4096 -np 2 --api-key "$KEY"
printf '%s %s\n' "http://127.0.0.1:$PORT" "$KEY" >"$CHAIN_TMP/engine-keys"
chmod 600 "$CHAIN_TMP/engine-keys"

chain_coordinator
chain_worker w "llamacpp=http://127.0.0.1:$PORT" --engine-key-file "$CHAIN_TMP/engine-keys" \
	--donate always --max-jobs 4
W_LOG=$CHAIN_TMP/worker-w.log
chain_wait_nodes tiny-llama 1
chain_up main "$COORD_URL"

# ---- the official SDKs ----------------------------------------------------------------------
JOBS=$CHAIN_TMP/jobs
: >"$JOBS"
TROOP_UP_URL=$UP_URL TROOP_MODEL=tiny-llama TROOP_PROMPT="Say hello" TROOP_NATIVE=1 \
	TROOP_MAX_TOKENS=8 TROOP_JOBS_FILE=$JOBS timeout 300 node "$NODEDIR/apis_sdk.mjs" ||
	chain_fail "the SDK checks against llama-server failed"

for p in /v1/responses /v1/messages; do
	line=$(grep "path=$p requester=.*outcome=ok" "$W_LOG" | head -1)
	case "$line" in
	*usage=engine*) ok "$p passed through to llama-server, usage read: $(echo "$line" |
		grep -o 'prompt=[0-9]* completion=[0-9]*')" ;;
	*) chain_fail "no passed-through $p job with the engine's usage: $(grep "path=$p" "$W_LOG" | head -2)" ;;
	esac
done
grep -q "via=/v1/chat/completions" "$W_LOG" &&
	chain_fail "the worker translated although llama-server serves the APIs"

# ---- /tokenize, count_tokens, engine errors -------------------------------------------------
post() { curl -s -D "$3.h" -o "$3" -w '%{http_code}' "$UP_URL$1" -H 'Content-Type: application/json' -d "$2"; }
code=$(post /tokenize '{"model":"tiny-llama","content":"hello world"}' "$CHAIN_TMP/tok")
if [ "$code" = 200 ] && python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; assert len(t) >= 2 and all(isinstance(x, int) for x in t)' "$CHAIN_TMP/tok"; then
	ok "/tokenize: $(head -c 80 "$CHAIN_TMP/tok")"
else
	chain_fail "/tokenize: HTTP $code $(head -c 300 "$CHAIN_TMP/tok")"
fi
code=$(post /v1/messages/count_tokens '{"model":"tiny-llama","messages":[{"role":"user","content":"hello world"}]}' "$CHAIN_TMP/count")
case "$code" in
200) python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["input_tokens"] > 0' "$CHAIN_TMP/count" &&
	ok "/v1/messages/count_tokens: $(cat "$CHAIN_TMP/count")" ||
	chain_fail "count_tokens: $(cat "$CHAIN_TMP/count")" ;;
404) python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); assert e["type"]=="error" and e["error"]["type"]=="not_found_error"' "$CHAIN_TMP/count" &&
	ok "/v1/messages/count_tokens: this llama.cpp does not serve it: 404 in the Anthropic shape" ||
	chain_fail "count_tokens 404: $(cat "$CHAIN_TMP/count")" ;;
*) chain_fail "count_tokens: HTTP $code $(cat "$CHAIN_TMP/count")" ;;
esac
# an engine error (llama-server refuses a temperature that is not a
# number: 400): its error, in the Anthropic shape, not failed over
code=$(post /v1/messages '{"model":"tiny-llama","max_tokens":4,"temperature":"hot","messages":[{"role":"user","content":"hi"}]}' "$CHAIN_TMP/merr")
if [ "${code:0:1}" = 4 ] || [ "${code:0:1}" = 5 ] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
assert e["type"] == "error" and e["error"]["type"].endswith("_error"), e
assert "temperature" in e["error"]["message"], e' "$CHAIN_TMP/merr" &&
	grep -qi '^x-troop-job' "$CHAIN_TMP/merr.h"; then
	ok "engine error on /v1/messages: HTTP $code $(head -c 160 "$CHAIN_TMP/merr")"
else
	chain_fail "engine error on /v1/messages: HTTP $code $(head -c 300 "$CHAIN_TMP/merr")"
fi
# an image: this llama-server has no vision projector (/props says so), so
# no node takes it: 400 naming why, in the Anthropic shape, before any node
code=$(post /v1/messages '{"model":"tiny-llama","max_tokens":4,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}' "$CHAIN_TMP/merr")
if [ "$code" = 400 ] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
assert e["type"] == "error" and e["error"]["type"] == "invalid_request_error", e
assert "takes images" in e["error"]["message"], e' "$CHAIN_TMP/merr"; then
	ok "an image on /v1/messages: HTTP $code $(head -c 160 "$CHAIN_TMP/merr")"
else
	chain_fail "an image on /v1/messages: HTTP $code $(head -c 300 "$CHAIN_TMP/merr")"
fi
grep -q failover "$CHAIN_TMP/up-main.log" && chain_fail "troop up failed over on an engine error"

# ---- settlement -----------------------------------------------------------------------------
n=$(wc -l <"$JOBS")
[ "$n" -ge 4 ] || chain_fail "only $n job ids from the SDK checks"
cat >"$CHAIN_TMP/settled.py" <<'PY'
import json, sys
jobs = set(open(sys.argv[1]).read().split())
rows = json.load(sys.stdin)["transactions"]
paid = {t["job_id"] for t in rows if t["type"] == "settle" and t["credits"] > 0}
assert not jobs - paid, "not settled with a charge: %s" % sorted(jobs - paid)
PY
settled=
for _ in $(seq 1 100); do
	chain_troop transactions --json --limit 500 | python3 "$CHAIN_TMP/settled.py" "$JOBS" \
		2>"$CHAIN_TMP/settled.err" && { settled=1; break; }
	sleep 0.1
done
[ -n "$settled" ] && ok "all $n SDK jobs settled and charged" ||
	chain_fail "settlement: $(tail -2 "$CHAIN_TMP/settled.err")"
grep -qF -- "$KEY" "$CHAIN_TMP"/worker-*.log "$CHAIN_TMP"/up-*.log && chain_fail "the engine key is in a log"
grep -q "Sanitizer\|runtime error:" "$W_LOG" && chain_fail "sanitizer report in the worker log"
[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
