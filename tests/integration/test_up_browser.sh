#!/usr/bin/env bash
# test_up_browser.sh - `troop up` against the requests a web page in the
# user's browser can make (issue 16, item 1), on a real coordinator, worker
# and proxy:
#   - a cross-site "simple" POST (text/plain, Origin: http://evil.example)
#     is refused before anything is charged, as is a DNS-rebinding request
#     (Host: evil.example:PORT) for completions or /v1/models;
#   - non-JSON content types get 415; application/json with or without a
#     charset, loopback Host names (localhost, 127.x, [::1]) and troop up's
#     own origin work;
#   - --allow-origin and --allow-host (and TROOP_ALLOW_ORIGIN) let the
#     named page and name in, with CORS headers and a preflight answer.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init

MODEL=llama3:8b
BODY='{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
chain_coordinator
chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL"

# code URL [CURL ARGS...]: the HTTP status
code() {
	local url=$1
	shift
	curl -s -o "$CHAIN_TMP/body" -D "$CHAIN_TMP/head" -w '%{http_code}' "$@" "$url"
}
expect() { # expect WANT WHAT URL [CURL ARGS...]
	local want=$1 what=$2 got
	shift 2
	got=$(code "$@")
	if [ "$got" = "$want" ]; then
		echo "ok: $what -> $got"
	else
		chain_fail "$what: HTTP $got, want $want: $(head -c 300 "$CHAIN_TMP/body")"
	fi
}
jobs_charged() { # the number of ledger transactions of the client
	chain_troop transactions --json 2>/dev/null | python3 -c \
		'import json,sys; d=json.load(sys.stdin); t=d.get("transactions", d) if isinstance(d, dict) else d; print(len(t))'
}

CHAT=$UP_URL/v1/chat/completions
before=$(jobs_charged)
[ -n "$before" ] || chain_fail "cannot count the transactions"
expect 403 "cross-site text/plain POST" "$CHAT" -H 'Origin: http://evil.example' \
	-H 'Content-Type: text/plain' --data-raw "$BODY"
grep -q origin_not_allowed "$CHAIN_TMP/body" || chain_fail "no origin_not_allowed code"
grep -qi '^access-control-allow-origin' "$CHAIN_TMP/head" && chain_fail "CORS header for a refused origin"
expect 403 "cross-site JSON POST" "$CHAT" -H 'Origin: http://evil.example' \
	-H 'Content-Type: application/json' --data-raw "$BODY"
expect 403 "Origin: null" "$CHAT" -H 'Origin: null' -H 'Content-Type: application/json' \
	--data-raw "$BODY"
expect 403 "DNS rebinding: POST with Host evil.example" "$CHAT" \
	-H "Host: evil.example:$UP_PORT" -H 'Content-Type: application/json' --data-raw "$BODY"
grep -q host_not_allowed "$CHAIN_TMP/body" || chain_fail "no host_not_allowed code"
expect 403 "DNS rebinding: GET /v1/models with Host evil.example" "$UP_URL/v1/models" \
	-H "Host: evil.example:$UP_PORT"
expect 403 "Host 127.0.0.1.evil.example" "$UP_URL/v1/models" -H "Host: 127.0.0.1.evil.example"
expect 415 "text/plain without Origin" "$CHAT" -H 'Content-Type: text/plain' --data-raw "$BODY"
grep -q unsupported_media_type "$CHAIN_TMP/body" || chain_fail "no unsupported_media_type code"
expect 415 "form-urlencoded (curl -d without -H)" "$CHAT" --data-raw "$BODY"
expect 415 "multipart/form-data" "$CHAT" -F "x=$BODY"
expect 415 "application/jsonx" "$CHAT" -H 'Content-Type: application/jsonx' --data-raw "$BODY"
after=$(jobs_charged)
[ "$before" = "$after" ] || chain_fail "refused requests were charged: $before -> $after transactions"

expect 200 "application/json" "$CHAT" -H 'Content-Type: application/json' --data-raw "$BODY"
expect 200 "application/json; charset=utf-8" "$CHAT" \
	-H 'Content-Type: application/json; charset=utf-8' --data-raw "$BODY"
expect 200 "Host localhost:PORT" "$UP_URL/v1/models" -H "Host: localhost:$UP_PORT"
expect 200 "Host 127.0.0.2" "$UP_URL/v1/models" -H "Host: 127.0.0.2"
expect 200 "Host [::1]:PORT" "$UP_URL/v1/models" -H "Host: [::1]:$UP_PORT"
expect 200 "same-origin page of troop up" "$CHAT" -H "Origin: http://127.0.0.1:$UP_PORT" \
	-H 'Content-Type: application/json' --data-raw "$BODY"
expect 200 "/health" "$UP_URL/health"

# an allowed origin and host name
TROOP_ALLOW_ORIGIN=http://app.example:3000 chain_up allowed "$COORD_URL" \
	--allow-host troop.internal
AURL=$UP_URL
expect 204 "preflight from an allowed origin" "$AURL/v1/chat/completions" -X OPTIONS \
	-H 'Origin: http://app.example:3000' -H 'Access-Control-Request-Method: POST' \
	-H 'Access-Control-Request-Headers: content-type'
grep -qi '^access-control-allow-origin: http://app.example:3000' "$CHAIN_TMP/head" ||
	chain_fail "preflight without Access-Control-Allow-Origin"
expect 200 "POST from an allowed origin" "$AURL/v1/chat/completions" \
	-H 'Origin: http://app.example:3000' -H 'Content-Type: application/json' --data-raw "$BODY"
grep -qi '^access-control-allow-origin: http://app.example:3000' "$CHAIN_TMP/head" ||
	chain_fail "no Access-Control-Allow-Origin for an allowed origin"
expect 403 "another origin there" "$AURL/v1/chat/completions" \
	-H 'Origin: http://app.example:3001' -H 'Content-Type: application/json' --data-raw "$BODY"
expect 200 "an allowed Host name" "$AURL/v1/models" -H "Host: troop.internal:${AURL##*:}"
expect 403 "another Host name there" "$AURL/v1/models" -H "Host: troop.external"

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
