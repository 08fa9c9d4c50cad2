#!/usr/bin/env bash
# test_openai_sdk.sh - the official OpenAI Node SDK (npm package `openai`,
# installed here from the npm registry into $TROOP_BUILD_DIR/node-openai)
# runs tests/integration/openai_sdk.mjs against `troop up`, which finds a
# real `troop worker` (serving the engine simulator) through a real
# coordinator.  No network for npm is a failure, not a skip: this test is
# what says an unmodified SDK works.
set -u
. "$(dirname "$0")/troop_chain.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
SDK_MAJOR=6   # newest major that supports the Node 20 of Debian-based images

command -v node >/dev/null || { echo "FAIL: node is not installed (scripts/install-deps.sh test)"; exit 1; }
command -v npm >/dev/null || { echo "FAIL: npm is not installed (scripts/install-deps.sh test)"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }

NODEDIR=$BUILD/node-openai
mkdir -p "$NODEDIR"
have=$(node -e "try{console.log(require('$NODEDIR/node_modules/openai/package.json').version)}catch(e){}" 2>/dev/null)
if [ "${have%%.*}" != "$SDK_MAJOR" ]; then
	[ -f "$NODEDIR/package.json" ] ||
		echo '{"name":"troop-openai-sdk-test","private":true,"type":"module"}' >"$NODEDIR/package.json"
	if ! (cd "$NODEDIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
		"openai@$SDK_MAJOR" >"$NODEDIR/npm-install.log" 2>&1); then
		echo "FAIL: 'npm install openai@$SDK_MAJOR' failed; this test needs the npm registry"
		echo "      (https://registry.npmjs.org) to install the official OpenAI SDK:"
		tail -20 "$NODEDIR/npm-install.log"
		exit 1
	fi
fi
echo "openai SDK $(node -e "console.log(require('$NODEDIR/node_modules/openai/package.json').version)")"
# node resolves 'openai' from the script's own directory
cp "$HERE/openai_sdk.mjs" "$NODEDIR/openai_sdk.mjs"

chain_init
MODEL=llama3:8b
TPS=20
PROMPT="hello from the sdk"
chain_coordinator
chain_sim a --tokens-per-second $TPS
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --max-jobs 8 --donate always
WANT=$(curl -s "http://127.0.0.1:$SIM_PORT/v1/chat/completions" -d \
	"{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL"
MAIN_URL=$UP_URL
MAIN_UP_PID=$UP_PID

# a second troop whose accounts start with nothing: 402
RICH=$COORD_URL
chain_coordinator --starter-credits 0
chain_worker w2 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
CLIENT_HOME=$CHAIN_TMP/home-poor chain_up poor "$COORD_URL"
POOR_URL=$UP_URL
POOR_UP_PID=$UP_PID
COORD_URL=$RICH

TROOP_UP_URL=$MAIN_URL TROOP_POOR_UP_URL=$POOR_URL TROOP_MODEL=$MODEL TROOP_PROMPT=$PROMPT \
	TROOP_EXPECTED=$WANT TROOP_TOKENS_PER_SECOND=$TPS \
	timeout 120 node "$NODEDIR/openai_sdk.mjs" || chain_fail "the OpenAI SDK checks failed"
chain_stop_clean "$POOR_UP_PID" "$CHAIN_TMP/up-poor.log" "troop up (no credits)"
chain_stop_clean "$MAIN_UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "all ok"
