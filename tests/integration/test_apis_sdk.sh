#!/usr/bin/env bash
# test_apis_sdk.sh - the OpenAI Responses API and the Anthropic Messages API
# through the whole troop, with the official SDKs (npm `openai`
# client.responses, `@anthropic-ai/sdk` client.messages; installed here
# from the npm registry into $TROOP_BUILD_DIR/node-apis) running
# tests/integration/apis_sdk.mjs against `troop up`.  The engine is the
# simulator, which serves chat completions only: the worker translates
# (its job lines say via=/v1/chat/completions).  Also: the jobs are
# settled and paid for, errors come in each API's shape (curl), and a
# stream the engine breaks off ends with the API's own error event.
# No network for npm is a failure, not a skip.
set -u
. "$(dirname "$0")/troop_chain.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
OPENAI_MAJOR=6   # newest major that supports the Node 20 of Debian-based images

command -v node >/dev/null || { echo "FAIL: node is not installed (scripts/install-deps.sh test)"; exit 1; }
command -v npm >/dev/null || { echo "FAIL: npm is not installed (scripts/install-deps.sh test)"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }

NODEDIR=$BUILD/node-apis
mkdir -p "$NODEDIR"
if [ ! -f "$NODEDIR/node_modules/openai/package.json" ] ||
	[ ! -f "$NODEDIR/node_modules/@anthropic-ai/sdk/package.json" ]; then
	[ -f "$NODEDIR/package.json" ] ||
		echo '{"name":"troop-apis-sdk-test","private":true,"type":"module"}' >"$NODEDIR/package.json"
	if ! (cd "$NODEDIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
		"openai@$OPENAI_MAJOR" @anthropic-ai/sdk >"$NODEDIR/npm-install.log" 2>&1); then
		echo "FAIL: 'npm install openai@$OPENAI_MAJOR @anthropic-ai/sdk' failed; this test needs"
		echo "      the npm registry (https://registry.npmjs.org) to install the official SDKs:"
		tail -20 "$NODEDIR/npm-install.log"
		exit 1
	fi
fi
for p in openai @anthropic-ai/sdk; do
	echo "$p $(node -e "console.log(require('$NODEDIR/node_modules/$p/package.json').version)")"
done
cp "$HERE/apis_sdk.mjs" "$NODEDIR/apis_sdk.mjs"

chain_init
MODEL=llama3:8b
PROMPT="hello from the sdk"
chain_coordinator
chain_sim a --tokens-per-second 200
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --max-jobs 8 --donate always
W_LOG=$CHAIN_TMP/worker-w1.log
WANT=$(curl -s "http://127.0.0.1:$SIM_PORT/v1/chat/completions" -d \
	"{\"model\":\"$MODEL\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL"
MAIN_URL=$UP_URL
MAIN_UP_PID=$UP_PID
UP_KEY=troop-up-key-$RANDOM$RANDOM$RANDOM
chain_up keyed "$COORD_URL" --api-key "$UP_KEY"
KEYED_URL=$UP_URL

# a second troop whose accounts start with nothing: 402
RICH=$COORD_URL
chain_coordinator --starter-credits 0
chain_worker w2 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
CLIENT_HOME=$CHAIN_TMP/home-poor chain_up poor "$COORD_URL"
POOR_URL=$UP_URL
POOR_UP_PID=$UP_PID
COORD_URL=$RICH

JOBS=$CHAIN_TMP/jobs
: >"$JOBS"
TROOP_UP_URL=$MAIN_URL TROOP_POOR_UP_URL=$POOR_URL TROOP_MODEL=$MODEL TROOP_PROMPT=$PROMPT \
	TROOP_KEYED_UP_URL=$KEYED_URL TROOP_UP_KEY=$UP_KEY \
	TROOP_EXPECTED=$WANT TROOP_JOBS_FILE=$JOBS \
	timeout 180 node "$NODEDIR/apis_sdk.mjs" || chain_fail "the SDK checks failed"

# ---- the worker translated ----------------------------------------------------------------
for p in /v1/responses /v1/messages; do
	grep -q "path=$p via=/v1/chat/completions .*outcome=ok" "$W_LOG" &&
		echo "ok: $p translated to chat completions by the worker" ||
		chain_fail "no translated $p job in the worker log"
done

# ---- errors in each API's shape, from troop up itself -----------------------------------------
shape() { # shape PATH BODY STATUS PYCHECK
	local out code
	out=$(curl -s -w '\n%{http_code}' "$MAIN_URL$1" -H 'Content-Type: application/json' \
		-H 'anthropic-version: 2023-06-01' -H 'x-api-key: whatever' -d "$2")
	code=${out##*$'\n'}
	if [ "$code" = "$3" ] && printf '%s' "${out%$'\n'*}" | python3 -c "import json,sys; e=json.load(sys.stdin); assert $4, e"; then
		echo "ok: $1 -> $3 $(printf '%s' "${out%$'\n'*}" | head -c 160)"
	else
		chain_fail "$1 $2: HTTP $code ${out%$'\n'*}"
	fi
}
shape /v1/messages '{"max_tokens":8,"messages":[]}' 400 \
	'e["type"]=="error" and e["error"]["type"]=="invalid_request_error"'
shape /v1/messages '{"model":"nope:1b","max_tokens":8,"messages":[{"role":"user","content":"x"}]}' 404 \
	'e["type"]=="error" and e["error"]["type"]=="not_found_error" and "nope" in e["error"]["message"]'
shape /v1/messages "{\"model\":\"$MODEL\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}" 400 \
	'e["error"]["type"]=="invalid_request_error" and "document" in e["error"]["message"]'
shape /v1/responses '{"model":"nope:1b","input":"x"}' 404 \
	'e["error"]["code"]=="model_not_found"'
shape /v1/responses "{\"model\":\"$MODEL\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}" 400 \
	'e["error"]["type"]=="invalid_request_error" and "previous_response_id" in e["error"]["message"]'
code=$(curl -s -o /dev/null -w '%{http_code}' "$MAIN_URL/v1/messages" -H 'Content-Type: text/plain' -d '{}')
[ "$code" = 415 ] && echo "ok: /v1/messages text/plain -> 415" || chain_fail "text/plain: $code"

# ---- engine failures, in each API's shape ----------------------------------------------------
# a third troop: one engine that dies after 3 events of a stream, one that
# answers 500
chain_coordinator
chain_sim dying --models dying:1b --fault die-mid-stream --fault-after 3
chain_worker w3 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_sim broken --models broken:1b --fault 500
chain_worker w4 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes dying:1b 1
chain_wait_nodes broken:1b 1
CLIENT_HOME=$CHAIN_TMP/home-faults chain_up faults "$COORD_URL"
for api in messages responses; do
	if [ $api = messages ]; then
		body='{"model":"dying:1b","max_tokens":200,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
	else
		body='{"model":"dying:1b","max_output_tokens":200,"stream":true,"input":"hi"}'
	fi
	curl -sN "$UP_URL/v1/$api" -H 'Content-Type: application/json' -d "$body" >"$CHAIN_TMP/died-$api"
	if python3 - "$api" "$CHAIN_TMP/died-$api" <<'PY'
import json, sys
api, raw = sys.argv[1], open(sys.argv[2]).read()
evs = [e for e in raw.split("\n\n") if e.strip() and not e.startswith(":")]
assert len(evs) > 2, raw
last = evs[-1].splitlines()
assert last[0] == "event: error", last
d = json.loads(last[1][6:])
assert d["type"] == "error", d
if api == "messages":
    assert d["error"]["type"] == "api_error" and d["error"]["message"], d
    assert "message_stop" not in raw and "content_block_delta" in raw, raw
else:
    assert d["error"]["code"] and d["message"] and d["sequence_number"] > 0, d
    assert "response.completed" not in raw and "output_text.delta" in raw, raw
PY
	then
		echo "ok: a $api stream whose engine died ends with the API's error event, no end event"
	else
		chain_fail "engine died mid-$api stream: $(tail -c 400 "$CHAIN_TMP/died-$api")"
	fi
done
shape() { # shape PATH BODY STATUS PYCHECK (on the faults troop)
	local out code
	out=$(curl -s -w '\n%{http_code}' "$UP_URL$1" -H 'Content-Type: application/json' -d "$2")
	code=${out##*$'\n'}
	if [ "$code" = "$3" ] && printf '%s' "${out%$'\n'*}" | python3 -c "import json,sys; e=json.load(sys.stdin); assert $4, e"; then
		echo "ok: engine error on $1 -> $3 $(printf '%s' "${out%$'\n'*}" | head -c 160)"
	else
		chain_fail "$1 $2: HTTP $code ${out%$'\n'*}"
	fi
}
shape /v1/messages '{"model":"broken:1b","max_tokens":8,"messages":[{"role":"user","content":"x"}]}' 500 \
	'e["type"]=="error" and e["error"]["type"]=="api_error" and e["error"]["message"]'
shape /v1/responses '{"model":"broken:1b","input":"x"}' 500 \
	'e["error"]["message"] and e["error"]["type"]'
grep -q failover "$CHAIN_TMP/up-faults.log" && chain_fail "troop up failed over on an engine error"
COORD_URL=$RICH

# ---- settlement: the translated jobs were paid for ----------------------------------------------
n=$(wc -l <"$JOBS")
[ "$n" -ge 4 ] || chain_fail "only $n job ids from the SDK checks"
cat >"$CHAIN_TMP/settled.py" <<'PY'
import json, sys
jobs = set(open(sys.argv[1]).read().split())
rows = json.load(sys.stdin)["transactions"]
paid = {t["job_id"] for t in rows if t["type"] == "settle" and t["credits"] > 0}
missing = jobs - paid
assert not missing, "not settled with a charge: %s" % sorted(missing)
PY
settled=
for _ in $(seq 1 100); do
	chain_troop transactions --json --limit 500 | python3 "$CHAIN_TMP/settled.py" "$JOBS" \
		2>"$CHAIN_TMP/settled.err" && { settled=1; break; }
	sleep 0.1
done
[ -n "$settled" ] && echo "ok: all $n SDK jobs settled and charged" ||
	chain_fail "settlement: $(tail -2 "$CHAIN_TMP/settled.err")"
grep -q "Sanitizer\|runtime error:" "$CHAIN_TMP"/worker-*.log "$CHAIN_TMP"/up-*.log &&
	chain_fail "sanitizer report in a log"

chain_stop_clean "$POOR_UP_PID" "$CHAIN_TMP/up-poor.log" "troop up (no credits)"
chain_stop_clean "$MAIN_UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "all ok"
