#!/usr/bin/env bash
# test_capabilities.sh - model capabilities through the real binaries, with
# engine simulators reporting them in each engine's own format:
#   - A: an Ollama whose /api/show says context 4096 and tools;
#     B: a llama.cpp whose /props says n_ctx 100000, vision and no tools
#     template (tools unknown); both serve "capm", on two workers; A also
#     serves "textonly";
#     C: a vLLM serving "other" with max_model_len 2048 (vLLM says nothing
#     of tools or images);
#   - the coordinator's and troop up's /v1/models show the largest context,
#     the capabilities some node has and the endpoints; `troop models`
#     shows them as columns and in --json;
#   - through troop up: a request with an image goes only to B, one with
#     tools only to A (known) rather than B (unknown), one with both to B;
#     an image for "textonly" is 400 naming why, not 503; max_tokens past
#     every context is 400; a prompt longer
#     than C's context is 400; an image to C (vLLM: unknown) still goes
#     there (unknown is taken when no node is known to fit).
set -u
. "$(dirname "$0")/troop_chain.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
chain_init

chain_coordinator
chain_sim a --version-kind ollama --models capm,textonly --capabilities tools --context 4096
SIM_A=$SIM_PORT
chain_worker a "ollama=http://127.0.0.1:$SIM_A" --donate always --no-verify
chain_sim b --version-kind llamacpp --models capm --capabilities vision --context 100000
SIM_B=$SIM_PORT
chain_worker b "llamacpp=http://127.0.0.1:$SIM_B" --donate always --no-verify
chain_sim c --version-kind vllm --models other --context 2048
SIM_C=$SIM_PORT
chain_worker c "vllm=http://127.0.0.1:$SIM_C" --donate always --no-verify
chain_up u "$COORD_URL"
chain_wait_nodes capm 2
chain_wait_nodes other 1

# field MODEL FIELD < list: the model's field as JSON
field() {
	python3 -c '
import json, sys
for m in json.load(sys.stdin)["data"]:
    if m["id"] == sys.argv[1]:
        print(json.dumps(m.get(sys.argv[2]), sort_keys=True))' "$1" "$2"
}

for src in "$COORD_URL/v1/models" "$UP_URL/v1/models"; do
	list=$(curl -s "$src")
	got=$(echo "$list" | field capm context_length)
	[ "$got" = 100000 ] || chain_fail "$src: capm context_length $got: $list"
	got=$(echo "$list" | field capm capabilities)
	[ "$got" = '["tools", "vision"]' ] || chain_fail "$src: capm capabilities $got"
	got=$(echo "$list" | field capm endpoints)
	[ "$got" = '["chat", "completions", "embeddings"]' ] || chain_fail "$src: capm endpoints $got"
	got=$(echo "$list" | field other context_length)
	[ "$got" = 2048 ] || chain_fail "$src: other context_length $got"
	got=$(echo "$list" | field other capabilities)
	[ "$got" = null ] || chain_fail "$src: other has capabilities $got (vLLM says none)"
done
# a node's own record in /peers: what its engine said, unknown left out
peers=$(curl -s "$COORD_URL/peers?model=capm")
echo "$peers" | python3 -c '
import json, sys
seen = {}
for n in json.load(sys.stdin)["nodes"]:
    m = [m for m in n["models"] if m["name"] == "capm"][0]
    seen[n["name"]] = (m.get("context_length"), m.get("capabilities"))
assert seen["a"] == (4096, {"tools": True, "vision": False, "embeddings": False}), seen
assert seen["b"] == (100000, {"vision": True}), seen
' || chain_fail "/peers capabilities: $peers"

table=$(chain_troop models)
echo "$table"
echo "$table" | head -1 | grep -q "CONTEXT.*CAPABILITIES" || chain_fail "no CONTEXT/CAPABILITIES columns"
echo "$table" | grep "^capm" | grep -q "100000.*tools,vision" || chain_fail "capm row: $table"
echo "$table" | grep "^other" | grep -q "2048" || chain_fail "other row: $table"
json=$(chain_troop models --json)
echo "$json" | field capm context_length | grep -qx 100000 || chain_fail "--json: $json"

stats() { curl -s "http://127.0.0.1:$1/sim/stats" | python3 -c \
	'import json,sys; print(json.load(sys.stdin)["chat_requests"])'; }
# post BODY: status and body of a chat request through troop up
post() {
	curl -s -o "$CHAIN_TMP/reply" -w '%{http_code}' "$UP_URL/v1/chat/completions" \
		-H 'Content-Type: application/json' -d "$1"
}
IMAGE='{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}'
TOOLS='"tools":[{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}]'

a0=$(stats "$SIM_A"); b0=$(stats "$SIM_B")
for i in 1 2 3 4; do
	code=$(post "{\"model\":\"capm\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"what is this $i\"},$IMAGE]}]}")
	[ "$code" = 200 ] || chain_fail "image request $i: $code $(cat "$CHAIN_TMP/reply")"
done
a1=$(stats "$SIM_A"); b1=$(stats "$SIM_B")
[ $((b1 - b0)) = 4 ] && [ "$a1" = "$a0" ] ||
	chain_fail "images went to A $((a1 - a0)) times, to B $((b1 - b0)) times (want 0 and 4)"
for i in 1 2 3 4; do
	code=$(post "{\"model\":\"capm\",\"max_tokens\":4,$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"time $i\"}]}")
	[ "$code" = 200 ] || chain_fail "tools request $i: $code $(cat "$CHAIN_TMP/reply")"
done
a2=$(stats "$SIM_A"); b2=$(stats "$SIM_B")
[ $((a2 - a1)) = 4 ] && [ "$b2" = "$b1" ] ||
	chain_fail "tools went to A $((a2 - a1)) times, to B $((b2 - b1)) times (want 4 and 0)"

# tools and an image: A said no to images, B did not say about tools: B
code=$(post "{\"model\":\"capm\",\"max_tokens\":4,$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":[$IMAGE]}]}")
[ "$code" = 200 ] || chain_fail "tools and image: $code $(cat "$CHAIN_TMP/reply")"
[ $(( $(stats "$SIM_B") - b2 )) = 1 ] || chain_fail "tools and image did not go to B"
# nobody can: 400 saying why, never 503
code=$(post "{\"model\":\"textonly\",\"messages\":[{\"role\":\"user\",\"content\":[$IMAGE]}]}")
[ "$code" = 400 ] || chain_fail "an image to textonly: $code (want 400)"
grep -q "no node serving 'textonly' takes images" "$CHAIN_TMP/reply" ||
	chain_fail "why: $(cat "$CHAIN_TMP/reply")"
[ "$(stats "$SIM_A")" = "$a2" ] || chain_fail "the refused image reached A"
code=$(post '{"model":"capm","max_tokens":200000,"messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 400 ] || chain_fail "max_tokens 200000: $code (want 400)"
grep -q "largest context is 100000" "$CHAIN_TMP/reply" || chain_fail "why: $(cat "$CHAIN_TMP/reply")"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["type"] and e["code"] and e["message"]' \
	"$CHAIN_TMP/reply" || chain_fail "not the error shape: $(cat "$CHAIN_TMP/reply")"
LONG=$(python3 -c 'print(" ".join(["word"] * 2000))')
code=$(post "{\"model\":\"other\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"$LONG\"}]}")
[ "$code" = 400 ] || chain_fail "a 10000-byte prompt to a 2048 context: $code (want 400)"
grep -q "no node serving 'other' has a context long enough" "$CHAIN_TMP/reply" ||
	chain_fail "why: $(cat "$CHAIN_TMP/reply")"
# troop chat requires the same
chain_troop chat -m other --max-tokens 3000 "hi" >/dev/null 2>"$CHAIN_TMP/chat.err" &&
	chain_fail "troop chat past the context succeeded"
grep -q "has a context long enough" "$CHAIN_TMP/chat.err" ||
	chain_fail "troop chat past the context: $(cat "$CHAIN_TMP/chat.err")"
# a request that fits is served
code=$(post '{"model":"other","max_tokens":16,"messages":[{"role":"user","content":"short"}]}')
[ "$code" = 200 ] || chain_fail "a short prompt to other: $code $(cat "$CHAIN_TMP/reply")"
# vLLM did not say whether it takes images: unknown is taken
code=$(post "{\"model\":\"other\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[$IMAGE]}]}")
[ "$code" = 200 ] || chain_fail "an image to vLLM (unknown): $code $(cat "$CHAIN_TMP/reply")"
[ "$CHAIN_FAILS" -eq 0 ]
