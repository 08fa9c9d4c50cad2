#!/usr/bin/env bash
# test_engine_llamacpp_caps.sh - model capabilities against the real
# llama.cpp llama-server (the cached build of test_engine_llamacpp.sh, the
# tiny random-weight model, no --mmproj): its /props says n_ctx (the
# context one request gets) and modalities.vision false; through a worker,
# a coordinator and `troop up`:
#   - /v1/models of the coordinator and of troop up show the server's
#     context length, and the endpoints it serves natively (responses,
#     messages, as the worker's probe found them);
#   - a request with an image goes to no node: 400 naming why (before,
#     the engine's 500 "image input is not supported" reached the app as a
#     503 "busy");
#   - a prompt longer than the context (bytes / 4 past it): 400, and the
#     engine never sees it;
#   - a short request and a request with tools (llama-server takes tools
#     in a generic format when its template has none) are still served.
# Exit 77 (skipped) only when llama-server cannot be built on this machine.
# labels: engine
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
. "$HERE/troop_chain.sh"
ok() { echo "ok: $*"; }

. "$HERE/llama_env.sh"


PORT=$(free_port)
start_llama caps "$PORT" -c 1024 -np 1
ENGINE=http://127.0.0.1:$PORT
N_CTX=$(curl -s "$ENGINE/props" | python3 -c \
	'import json,sys; print(json.load(sys.stdin)["default_generation_settings"]["n_ctx"])')
[ "$N_CTX" -gt 0 ] 2>/dev/null || { chain_fail "llama-server /props has no n_ctx"; exit 1; }
echo "llama-server /props: n_ctx $N_CTX"

chain_coordinator
chain_worker w "llamacpp=$ENGINE" --donate always --no-verify
chain_wait_nodes tiny-llama 1
chain_up main "$COORD_URL"

for src in "$COORD_URL/v1/models" "$UP_URL/v1/models"; do
	got=$(curl -s "$src" | python3 -c '
import json, sys
m = [m for m in json.load(sys.stdin)["data"] if m["id"] == "tiny-llama"][0]
print(m.get("context_length"), m.get("capabilities"))')
	if [ "$got" = "$N_CTX None" ]; then
		ok "$src: context_length $N_CTX, no capabilities (no vision; tools not said)"
	else
		chain_fail "$src: tiny-llama context_length and capabilities: $got"
	fi
done

# the APIs the worker's probe found llama-server serves natively
eps=$(curl -s "$UP_URL/v1/models" | python3 -c '
import json, sys
m = [m for m in json.load(sys.stdin)["data"] if m["id"] == "tiny-llama"][0]
print(",".join(m.get("endpoints", [])))')
case ",$eps," in
*,chat,*responses,*messages,*) ok "endpoints: $eps" ;;
*) chain_fail "endpoints of tiny-llama: '$eps' (llama-server serves /v1/responses and /v1/messages)" ;;
esac

# requests the engine served so far (its own counter)
served() { curl -s "$ENGINE/slots" | python3 -c \
	'import json,sys; print(sum(s.get("id_task", -1) + 1 for s in json.load(sys.stdin)))'; }
post() {
	curl -s -o "$CHAIN_TMP/reply" -w '%{http_code}' "$UP_URL/v1/chat/completions" \
		-H 'Content-Type: application/json' -d "$1"
}
IMAGE='{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}}'
before=$(served)
code=$(post "{\"model\":\"tiny-llama\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"what is this\"},$IMAGE]}]}")
if [ "$code" = 400 ] && grep -q "no node serving 'tiny-llama' takes images" "$CHAIN_TMP/reply"; then
	ok "an image: 400 $(cat "$CHAIN_TMP/reply")"
else
	chain_fail "an image: $code $(cat "$CHAIN_TMP/reply")"
fi
LONG=$(python3 -c "print(' '.join(['tokens'] * ($N_CTX * 4 // 7 + 50)))")
code=$(post "{\"model\":\"tiny-llama\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"$LONG\"}]}")
if [ "$code" = 400 ] && grep -q "has a context long enough" "$CHAIN_TMP/reply"; then
	ok "a prompt past the context: 400 $(cat "$CHAIN_TMP/reply")"
else
	chain_fail "a prompt past the context: $code $(cat "$CHAIN_TMP/reply")"
fi
[ "$(served)" = "$before" ] || chain_fail "a refused request reached the engine"
code=$(post '{"model":"tiny-llama","max_tokens":4,"messages":[{"role":"user","content":"hello"}]}')
[ "$code" = 200 ] && ok "a short request is served" || chain_fail "a short request: $code $(cat "$CHAIN_TMP/reply")"
code=$(post '{"model":"tiny-llama","max_tokens":4,"tools":[{"type":"function","function":{"name":"get_time","description":"the time","parameters":{"type":"object","properties":{}}}}],"messages":[{"role":"user","content":"what time is it"}]}')
[ "$code" = 200 ] && ok "a request with tools is served" ||
	chain_fail "a request with tools: $code $(cat "$CHAIN_TMP/reply")"
[ "$CHAIN_FAILS" -eq 0 ]
