#!/usr/bin/env bash
# test_sealed.sh - sealed jobs through the real binaries (docs/PROTOCOL.md
# "Sealed jobs"): a coordinator, an engine simulator, workers, `troop up`,
# and a recording TCP relay between `troop up` and the worker (the worker
# advertises the relay's port with --advertise-port).
#   - /peers and `troop nodes` show that the worker seals;
#   - chat, completions, embeddings, Responses and Messages, streamed and
#     not: the app gets the engine's answer, and neither the prompt's text
#     nor the completion's crosses the relay in the clear;
#   - troop up offers a256gcm2 and the worker takes it; troop up then
#     keeps one job key for the worker (the X-Troop-Seal header's epk
#     repeats), and a reply to such a job that is not a256gcm2 (a256gcm2
#     taken out of the offer on the path) is refused, the key dropped;
#   - an older client's offer (none): a secretstream reply, opened;
#   - tampering on the relay (a flipped byte, a dropped chunk, two chunks
#     swapped, the stream ended early): the app gets an error, never the
#     altered bytes; a sealed request altered, or replayed under another
#     ticket: 400 from the worker, nothing reaches the engine;
#   - a sealed stream whose engine takes long to read the prompt: the
#     keep-alive comments reach the app (sealed on the way);
#   - a coordinator that substitutes another node's key (a proxy that
#     rewrites /authorize replies): troop up refuses to send (502);
#   - a worker started with --no-seal: plain requests still work, and
#     `troop up --require-sealed` refuses it;
#   - `troop chat` seals too: its prompt and answer do not cross the relay
#     in the clear, a tampered reply is an error (nothing of it printed), a
#     substituted key is refused before sending, --require-sealed refuses
#     the unsealed worker.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init
# no ticket fetched ahead: the account's starter credits must last every
# proxy and troop chat of the test, and a ticket ahead holds 300 of them
export TROOP_PREFETCH_IDLE=0
ok() { echo "ok: $*"; }
RELAY_PY=$CHAIN_SRC/tests/integration/seal_relay.py

MODEL=llama3:8b
PROMPT="zebrafish marmalade quasar 4711"
REC=$CHAIN_TMP/relay.rec
MODE=$CHAIN_TMP/relay.mode
echo none >"$MODE"

chain_coordinator
chain_sim a --tokens-per-second 100
SIM_A=$SIM_PORT

# worker A behind the recording relay
WP=$(chain_free_port)
RP=$(chain_free_port)
chain_spawn "$CHAIN_TMP/relay.log" "" python3 "$RELAY_PY" relay "$RP" "$WP" "$REC" "$MODE"
RELAY_PID=$CHAIN_PID
chain_spawn "$CHAIN_TMP/worker-a.log" "$CHAIN_TMP/home-worker-a" "$TROOP" worker \
	--coordinator "$COORD_URL" --listen "127.0.0.1:$WP" --advertise 127.0.0.1 \
	--advertise-port "$RP" --engine "vllm=http://127.0.0.1:$SIM_A" --name a --donate always
WA_PID=$CHAIN_PID
chain_port_from_log "$CHAIN_TMP/worker-a.log" worker_started "$WA_PID" >/dev/null || exit 1
chain_port_from_log "$CHAIN_TMP/relay.log" "listening on" "$RELAY_PID" >/dev/null 2>&1 ||
	grep -q "listening on" "$CHAIN_TMP/relay.log" || { echo "FAIL: relay"; exit 1; }
chain_wait_nodes "$MODEL" 1
# one proxy thread: the job keys kept are per thread
chain_up main "$COORD_URL" --threads 1

# ---- the node seals, and says so --------------------------------------------------
PEERS=$(curl -s "$COORD_URL/peers")
NODE_A=$(echo "$PEERS" | python3 -c 'import json,sys; n=json.load(sys.stdin)["nodes"][0]; print(n["node_id"])')
STMT_A=$(echo "$PEERS" | python3 -c 'import json,sys; n=json.load(sys.stdin)["nodes"][0]; print(n.get("seal_key",""))')
[ -n "$STMT_A" ] && ok "/peers carries the seal_key statement" || chain_fail "no seal_key in /peers: $PEERS"
[ "$(stat -c %a "$CHAIN_TMP/home-worker-a/worker/seal.key")" = 600 ] &&
	ok "seal.key is 0600" || chain_fail "seal.key mode $(stat -c %a "$CHAIN_TMP/home-worker-a/worker/seal.key")"
chain_troop nodes | grep -q "SEALED" || chain_fail "troop nodes has no SEALED column"
chain_troop nodes | grep -F -e "${NODE_A:0:8}" | grep -Eq " yes *$" &&
	ok "troop nodes: sealed yes" || chain_fail "troop nodes: $(chain_troop nodes)"

# ---- every API, streamed and not: nothing in the clear ----------------------------------
cat >"$CHAIN_TMP/check.py" <<'PY'
# check.py KIND STREAM REPLY_FILE RECORD_FILE PROMPT: the reply is a good
# answer of KIND; the text of the answer and the prompt are not in RECORD.
import json, sys
kind, stream, reply, record, prompt = sys.argv[1:6]
stream = stream == "true"
raw = open(reply, "rb").read().decode()
rec = open(record, "rb").read()
text = ""
if stream:
    assert '"error":{' not in raw and "event: error" not in raw, "error event: " + raw[-400:]
    for line in raw.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if kind == "chat":
            text += ev["choices"][0]["delta"].get("content") or "" if ev.get("choices") else ""
        elif kind == "completions":
            text += ev["choices"][0].get("text") or "" if ev.get("choices") else ""
        elif kind == "responses":
            if ev.get("type") == "response.output_text.delta":
                text += ev["delta"]
        elif kind == "messages":
            if ev.get("type") == "content_block_delta":
                text += ev["delta"].get("text", "")
else:
    o = json.loads(raw)
    assert not o.get("error"), raw
    if kind == "chat":
        text = o["choices"][0]["message"]["content"]
    elif kind == "completions":
        text = o["choices"][0]["text"]
    elif kind == "embeddings":
        text = json.dumps(o["data"][0]["embedding"][:4])[1:-1]
    elif kind == "responses":
        text = "".join(c.get("text", "") for it in o["output"] for c in it.get("content", []))
    elif kind == "messages":
        text = "".join(c.get("text", "") for c in o["content"])
assert len(text) >= 8, "short answer %r in %s" % (text, raw[:300])
for secret in [prompt, text] + [w for w in prompt.split() if len(w) >= 4]:
    assert secret.encode() not in rec, "%r crossed the relay in the clear" % secret
# the completion's words, the longer ones, one by one
for w in set(text.replace(",", " ").split()):
    if len(w) >= 7:
        assert w.encode() not in rec, "%r crossed the relay in the clear" % w
print(len(text))
PY
req() { # req PATH BODY OUT -> status
	curl -s -o "$3" -w '%{http_code}' "$UP_URL$1" -H 'Content-Type: application/json' -d "$2"
}
n_before=$(grep -c 'sealed=1' "$CHAIN_TMP/worker-a.log")
for stream in false true; do
	for kind in chat completions embeddings responses messages; do
		[ "$kind" = embeddings ] && [ "$stream" = true ] && continue
		case $kind in
		chat) path=/v1/chat/completions
			body="{\"model\":\"$MODEL\",\"stream\":$stream,\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" ;;
		completions) path=/v1/completions
			body="{\"model\":\"$MODEL\",\"stream\":$stream,\"max_tokens\":12,\"prompt\":\"$PROMPT\"}" ;;
		embeddings) path=/v1/embeddings
			body="{\"model\":\"$MODEL\",\"input\":\"$PROMPT\"}" ;;
		responses) path=/v1/responses
			body="{\"model\":\"$MODEL\",\"stream\":$stream,\"max_output_tokens\":12,\"input\":\"$PROMPT\"}" ;;
		messages) path=/v1/messages
			body="{\"model\":\"$MODEL\",\"stream\":$stream,\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" ;;
		esac
		out=$CHAIN_TMP/reply-$kind-$stream
		st=$(req "$path" "$body" "$out")
		if [ "$st" != 200 ]; then
			chain_fail "$kind stream=$stream: HTTP $st: $(head -c 400 "$out")"
			continue
		fi
		if r=$(python3 "$CHAIN_TMP/check.py" "$kind" "$stream" "$out" "$REC" "$PROMPT" 2>&1); then
			ok "$kind stream=$stream: $r chars of answer, nothing in the clear"
		else
			chain_fail "$kind stream=$stream: $r"
		fi
	done
done
n_after=$(grep -c 'sealed=1' "$CHAIN_TMP/worker-a.log")
[ $((n_after - n_before)) -ge 9 ] && ok "the worker served $((n_after - n_before)) sealed jobs" ||
	chain_fail "only $((n_after - n_before)) sealed jobs in the worker's log"
grep -aq "application/x-troop-sealed" "$REC" || chain_fail "no sealed reply crossed the relay"
grep -aqi "^x-troop-seal: v1" "$REC" || chain_fail "no X-Troop-Seal request header crossed the relay"
# troop up offers the a256gcm2 reply suite (and a256gcm) and the worker
# takes it; after the first reply troop up keeps the job key for this
# worker: the requests' epk repeats
grep -aqi "^x-troop-seal: v1;.*; reply=a256gcm2,a256gcm" "$REC" || chain_fail "troop up did not offer a256gcm2"
n_gcm2=$(grep -aci $'^content-type: application/x-troop-sealed; reply=a256gcm2\r$' "$REC")
[ "$n_gcm2" -ge 9 ] && ok "the sealed replies are a256gcm2 streams ($n_gcm2)" ||
	chain_fail "only $n_gcm2 a256gcm2 replies crossed the relay"
epks() { grep -aoi '^x-troop-seal: v1; epk=[A-Za-z0-9_-]*' "$REC" | sed 's/.*epk=//'; }
n_req=$(epks | wc -l)
n_epk=$(epks | sort -u | wc -l)
[ "$n_req" -ge 9 ] && [ "$n_epk" = 1 ] &&
	ok "troop up kept one job key for the worker: $n_epk distinct epk in $n_req sealed requests" ||
	chain_fail "$n_epk distinct epk in $n_req sealed requests"

# the same answer as the engine gives directly
BODY_STREAM_V1="{\"model\":\"$MODEL\",\"stream\":true,\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}"
BODY_CHAT="{\"model\":\"$MODEL\",\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}"
want=$(curl -s "http://127.0.0.1:$SIM_A/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY_CHAT" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
got=$(curl -s "$UP_URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY_CHAT" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ -n "$want" ] && [ "$want" = "$got" ] && ok "sealed answer = the engine's" ||
	chain_fail "sealed answer '$got', engine '$want'"

# a256gcm2 taken out of the offer of a job sealed with the kept key: the
# worker answers a256gcm, which a reply to such a job may not be (it is
# not bound to the ticket: another job's reply under the same key would
# open too); troop up refuses it, drops the key, and seals the next job
# with a fresh one
kept_epk=$(epks | tail -1)
n_refused=$(grep -c "not bound to the ticket" "$CHAIN_TMP/up-main.log")
echo "nogcm2 0" >"$MODE"
out=$CHAIN_TMP/nogcm2
st=$(req /v1/chat/completions "$BODY_CHAT" "$out")
grep -q "^none" "$MODE" || chain_fail "nogcm2 was not applied"
[ "$(epks | tail -1)" = "$kept_epk" ] || chain_fail "the downgraded job did not use the kept key"
if [ "$st" != 200 ] && ! grep -qF "$want" "$out" &&
	[ "$(grep -c "not bound to the ticket" "$CHAIN_TMP/up-main.log")" -gt "$n_refused" ]; then
	ok "a256gcm2 taken out of a kept key's offer: the a256gcm reply refused (HTTP $st)"
else
	chain_fail "downgraded reply to a kept key: HTTP $st, $(head -c 300 "$out")"
fi
st=$(req /v1/chat/completions "$BODY_CHAT" "$out")
[ "$st" = 200 ] && grep -qF "$want" "$out" && [ "$(epks | tail -1)" != "$kept_epk" ] &&
	ok "the next job: a fresh job key, answered" ||
	chain_fail "after the refusal: HTTP $st, epk $(epks | tail -1), $(head -c 300 "$out")"

# an older client's request (no reply suite offered): the worker answers
# with a secretstream, and it opens (streamed and whole); a troop up of its
# own, whose first job is sealed with a fresh key (the main one keeps its
# key, and would refuse such a reply to it, as above)
MAIN_URL=$UP_URL
chain_up nooffer "$COORD_URL"
for body in "$BODY_CHAT" "$BODY_STREAM_V1"; do
	n_v1=$(grep -aci $'^content-type: application/x-troop-sealed\r$' "$REC")
	echo "nooffer 0" >"$MODE"
	out=$CHAIN_TMP/nooffer-$n_v1
	st=$(req /v1/chat/completions "$body" "$out")
	grep -q "^none" "$MODE" || chain_fail "nooffer was not applied"
	if [ "$st" = 200 ] && { grep -qF "$want" "$out" || grep -q '^data: \[DONE\]' "$out"; } &&
		! grep -q '"error"' "$out" &&
		[ "$(grep -aci $'^content-type: application/x-troop-sealed\r$' "$REC")" -gt "$n_v1" ]; then
		ok "no reply suite offered: a secretstream reply, opened ($(head -c 60 "$out" | tr -d '\n')...)"
	else
		chain_fail "no reply suite offered: HTTP $st, $(head -c 300 "$out")"
	fi
done
chain_stop "$UP_PID"
UP_URL=$MAIN_URL

# ---- troop chat seals too ---------------------------------------------------------------
PROMPT_CHAT="kumquat xylophone nebula 9913"
n_before=$(grep -c 'sealed=1' "$CHAIN_TMP/worker-a.log")
if chain_troop chat -m "$MODEL" --max-tokens 12 "$PROMPT_CHAT" >"$CHAIN_TMP/chat.out" 2>"$CHAIN_TMP/chat.err"; then
	python3 - "$CHAIN_TMP/chat.out" "$REC" "$PROMPT_CHAT" <<'PY' && ok "troop chat: answer shown, prompt and answer sealed on the way" || chain_fail "troop chat crossed in the clear"
import sys
text = open(sys.argv[1]).read().strip()
rec = open(sys.argv[2], "rb").read()
assert len(text) >= 8, "short answer %r" % text
for w in sys.argv[3].split() + [w for w in text.replace(",", " ").split() if len(w) >= 7]:
    assert w.encode() not in rec, "%r crossed the relay in the clear" % w
PY
else
	chain_fail "troop chat: $(cat "$CHAIN_TMP/chat.err")"
fi
[ "$(grep -c 'sealed=1' "$CHAIN_TMP/worker-a.log")" -gt "$n_before" ] &&
	ok "the worker served troop chat's job sealed" || chain_fail "troop chat's job was not sealed"
for mode in "flip 2" "cut 3"; do
	echo "$mode" >"$MODE"
	if chain_troop chat -m "$MODEL" --max-tokens 8 "$PROMPT_CHAT" >"$CHAIN_TMP/chat-t.out" 2>"$CHAIN_TMP/chat-t.err"; then
		chain_fail "troop chat, $mode: succeeded: $(cat "$CHAIN_TMP/chat-t.out")"
	elif grep -q "sealed" "$CHAIN_TMP/chat-t.err" && ! grep -q "trying another node" "$CHAIN_TMP/chat-t.err"; then
		ok "troop chat, $mode: an error, no second run ($(grep "troop chat: node" "$CHAIN_TMP/chat-t.err" | cut -c1-120))"
	else
		chain_fail "troop chat, $mode: $(cat "$CHAIN_TMP/chat-t.err")"
	fi
	grep -q "^none" "$MODE" || chain_fail "$mode was not applied to troop chat"
done

# ---- tampering on the path ------------------------------------------------------------------
BODY_STREAM="{\"model\":\"$MODEL\",\"stream\":true,\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}"
for mode in "flip 2" "drop 2" "swap 2" "cut 3"; do
	echo "$mode" >"$MODE"
	out=$CHAIN_TMP/tamper-${mode// /-}
	st=$(req /v1/chat/completions "$BODY_STREAM" "$out")
	if grep -q '"error"' "$out" && ! grep -q '\[DONE\]' "$out"; then
		ok "stream, $mode: the app got an error event and no [DONE] (HTTP $st)"
	elif [ "$st" -ge 500 ] && grep -q '"error"' "$out"; then
		ok "stream, $mode: the app got HTTP $st with an error"
	else
		chain_fail "stream, $mode: HTTP $st, $(head -c 600 "$out")"
	fi
	grep -q "^none" "$MODE" || chain_fail "$mode was not applied"
done
for mode in "flip 1" "cut 1"; do
	echo "$mode" >"$MODE"
	out=$CHAIN_TMP/tamper-json-${mode// /-}
	st=$(req /v1/chat/completions "$BODY_CHAT" "$out")
	[ "$st" = 502 ] && grep -q seal_open_failed "$out" &&
		ok "whole reply, $mode: 502 seal_open_failed" ||
		chain_fail "whole reply, $mode: HTTP $st, $(head -c 400 "$out")"
done
grep -q "seal_open_failed" "$CHAIN_TMP/up-main.log" || chain_fail "troop up logged no seal_open_failed"

# a sealed request altered, or replayed under another ticket: 400, nothing run
for mode in "reqflip 0" "replay 0"; do
	echo "$mode" >"$MODE"
	out=$CHAIN_TMP/tamper-req-${mode// /-}
	st=$(req /v1/chat/completions "$BODY_CHAT" "$out")
	[ "$st" = 400 ] && grep -q "does not open" "$out" &&
		ok "request, $mode: 400, the sealed body does not open" ||
		chain_fail "request, $mode: HTTP $st, $(head -c 400 "$out")"
done
[ "$(grep -c 'sealed body does not open' "$CHAIN_TMP/worker-a.log")" -ge 2 ] ||
	chain_fail "the worker did not log the refusals"

# ---- keep-alives while the engine reads the prompt, sealed too ----------------------------
chain_sim k --models slow:1b --ttft-ms 6500 --tokens-per-second 100
chain_worker k "vllm=http://127.0.0.1:$SIM_PORT" --donate always
WK_PID=$WORKER_PID
chain_wait_nodes slow:1b 1
st=$(req /v1/chat/completions "{\"model\":\"slow:1b\",\"stream\":true,\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" "$CHAIN_TMP/slow")
if [ "$st" = 200 ] && grep -q "^: keep-alive" "$CHAIN_TMP/slow" && grep -q '\[DONE\]' "$CHAIN_TMP/slow" &&
	grep -q 'sealed=1' "$CHAIN_TMP/worker-k.log"; then
	ok "a sealed stream gets the keep-alives while the engine reads the prompt"
else
	chain_fail "slow sealed stream: HTTP $st $(head -c 400 "$CHAIN_TMP/slow")"
fi
chain_stop "$WK_PID"

# ---- a coordinator that substitutes a key ---------------------------------------------
chain_sim b --tokens-per-second 100
chain_worker b "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 2
curl -s "$COORD_URL/peers" | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    print(n["node_id"], n["seal_key"])' >"$CHAIN_TMP/stmts"
[ "$(wc -l <"$CHAIN_TMP/stmts")" = 2 ] || chain_fail "not two statements: $(cat "$CHAIN_TMP/stmts")"
FP=$(chain_free_port)
chain_spawn "$CHAIN_TMP/authz.log" "" python3 "$RELAY_PY" authz "$FP" "$COORD_PORT" "$CHAIN_TMP/stmts"
for i in $(seq 1 100); do grep -q "listening on" "$CHAIN_TMP/authz.log" && break; sleep 0.05; done
chain_up evil "http://127.0.0.1:$FP"
EVIL_URL=$UP_URL
jobs_b=$(grep -c 'job=' "$CHAIN_TMP/worker-b.log")
rec_size=$(stat -c %s "$REC")
out=$CHAIN_TMP/substituted
st=$(curl -s -o "$out" -w '%{http_code}' "$EVIL_URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY_CHAT")
[ "$st" = 502 ] && grep -q "seal_key_invalid" "$out" && grep -q "not signed by that node" "$out" &&
	ok "substituted key: 502 seal_key_invalid, request not sent" ||
	chain_fail "substituted key: HTTP $st, $(head -c 400 "$out")"
[ "$(stat -c %s "$REC")" = "$rec_size" ] || chain_fail "bytes crossed the relay with a substituted key"
[ "$(grep -c 'job=' "$CHAIN_TMP/worker-b.log")" = "$jobs_b" ] || chain_fail "worker b ran a job"
grep -q "seal_refused" "$CHAIN_TMP/up-evil.log" || chain_fail "troop up logged no seal_refused"
if TROOP_HOME=$CHAIN_TMP/home-client "$TROOP" chat --coordinator "http://127.0.0.1:$FP" --wait 0 \
	-m "$MODEL" "$PROMPT_CHAT" >"$CHAIN_TMP/chat-evil.out" 2>"$CHAIN_TMP/chat-evil.err"; then
	chain_fail "troop chat sent with a substituted key: $(cat "$CHAIN_TMP/chat-evil.out")"
elif grep -q "not signed by that node" "$CHAIN_TMP/chat-evil.err"; then
	ok "troop chat, substituted key: refused, not sent"
else
	chain_fail "troop chat, substituted key: $(cat "$CHAIN_TMP/chat-evil.err")"
fi
[ "$(stat -c %s "$REC")" = "$rec_size" ] || chain_fail "troop chat's bytes crossed the relay with a substituted key"
[ "$(grep -c 'job=' "$CHAIN_TMP/worker-b.log")" = "$jobs_b" ] || chain_fail "worker b ran troop chat's job"

# ---- a worker that does not seal -------------------------------------------------------
chain_stop "$WA_PID"
chain_stop "$WORKER_PID"
chain_sim c
chain_worker c "vllm=http://127.0.0.1:$SIM_PORT" --donate always --no-seal
NODE_C=$(grep -o 'node=[A-Za-z0-9_-]*' "$CHAIN_TMP/worker-c.log" | head -1 | cut -d= -f2)
for i in $(seq 1 200); do
	curl -s "$COORD_URL/peers?model=$MODEL" | python3 -c '
import json, sys
n = [n for n in json.load(sys.stdin)["nodes"] if n["status"] == "IDLE"]
sys.exit(0 if len(n) == 1 and not n[0].get("seal_key") else 1)' && break
	sleep 0.1
done
chain_troop nodes | grep -F -e "$NODE_C" | grep -Eq " no *$" && ok "troop nodes: sealed no" ||
	chain_fail "troop nodes for --no-seal: $(chain_troop nodes)"
st=$(req /v1/chat/completions "$BODY_CHAT" "$CHAIN_TMP/plain")
[ "$st" = 200 ] && ok "an unsealed worker still serves troop up" ||
	chain_fail "unsealed worker: HTTP $st $(head -c 300 "$CHAIN_TMP/plain")"
chain_up strict "$COORD_URL" --require-sealed
st=$(req /v1/chat/completions "$BODY_CHAT" "$CHAIN_TMP/strict")
[ "$st" = 503 ] && grep -q "does not seal" "$CHAIN_TMP/strict" &&
	ok "--require-sealed refuses the unsealed worker" ||
	chain_fail "--require-sealed: HTTP $st $(head -c 400 "$CHAIN_TMP/strict")"
if chain_troop chat --require-sealed --wait 0 -m "$MODEL" "$PROMPT_CHAT" >"$CHAIN_TMP/chat-strict.out" \
	2>"$CHAIN_TMP/chat-strict.err"; then
	chain_fail "troop chat --require-sealed used the unsealed worker"
elif grep -q "does not seal" "$CHAIN_TMP/chat-strict.err"; then
	ok "troop chat --require-sealed refuses the unsealed worker"
else
	chain_fail "troop chat --require-sealed: $(cat "$CHAIN_TMP/chat-strict.err")"
fi
chain_troop chat --wait 0 -m "$MODEL" "$PROMPT_CHAT" >/dev/null 2>"$CHAIN_TMP/chat-plain.err" &&
	ok "troop chat still works with the unsealed worker" ||
	chain_fail "troop chat, unsealed worker: $(cat "$CHAIN_TMP/chat-plain.err")"
[ "$CHAIN_FAILS" -eq 0 ]
