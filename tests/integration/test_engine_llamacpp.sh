#!/usr/bin/env bash
# test_engine_llamacpp.sh - the whole troop against a real llama.cpp
# llama-server (built from source by scripts/build-llama-server.sh, cached
# per llama.cpp version; the first build takes about 20 minutes on 2 cores)
# serving a tiny random-weight model with a real tokenizer
# (scripts/make-tiny-gguf.py).  Two servers: A serves chat and completions
# and wants an API key; B is started with --embeddings and an alias with a
# slash.  One worker serves both (--engine twice, A's key from
# --engine-key-file); a coordinator; `troop up`.
#   - the worker advertises "tiny-llama", not the engine's "tiny-llama.gguf"
#     (nor a path), and the alias as it is;
#   - chat and completions, streamed and not, usage, embeddings, through
#     `troop up`; GET /v1/models/org/name with the slash;
#   - an engine error (A has no --embeddings: 501) reaches the app with the
#     engine's status and message, is not failed over, and is not charged;
#   - a stream whose prompt takes seconds to read is not cut by the
#     first-byte timeout;
#   - an app that goes away mid-stream stops the engine's work;
#   - the official OpenAI SDK (npm `openai`): a long-prompt stream and the
#     engine's 501 raised as an APIError;
#   - the engine killed mid-stream: the stream ends with an error event and
#     no [DONE]; its models are withdrawn within seconds; restarted, it
#     serves again within seconds;
#   - settlement of the jobs; the engine key never shows in a log.
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

KEY=troop-engine-key-$RANDOM$RANDOM$RANDOM
PORT_A=$(free_port)
PORT_B=$(free_port)
ARGS_A=(-c 32768 -np 1 --api-key "$KEY")
start_llama a "$PORT_A" "${ARGS_A[@]}"
PID_A=$LLAMA_PID
start_llama b "$PORT_B" -c 2048 -np 1 --embeddings --pooling mean --alias troop-test/tiny-embed
ENGINE_A=http://127.0.0.1:$PORT_A
printf '# engine keys\n%s %s\n' "$ENGINE_A" "$KEY" >"$CHAIN_TMP/engine-keys"
chmod 600 "$CHAIN_TMP/engine-keys"

chain_coordinator --node-ttl 30
chain_worker w "llamacpp=$ENGINE_A" --engine "llamacpp=http://127.0.0.1:$PORT_B" \
	--engine-key-file "$CHAIN_TMP/engine-keys" --donate always --max-jobs 8
W_LOG=$CHAIN_TMP/worker-w.log
chain_wait_nodes tiny-llama 1
chain_up main "$COORD_URL" --first-byte-timeout 2

# ---- names ----------------------------------------------------------------------------
ids=$(curl -s "$COORD_URL/v1/models" | python3 -c \
	'import json,sys; print(" ".join(sorted(m["id"] for m in json.load(sys.stdin)["data"])))')
if [ "$ids" = "tiny-llama troop-test/tiny-embed" ]; then
	ok "models advertised as 'tiny-llama' (the engine says $(basename "$MODEL_FILE") or its path) and the alias"
else
	chain_fail "advertised models: '$ids'"
fi
for m in tiny-llama troop-test/tiny-embed; do
	got=$(curl -s -w ' %{http_code}' "$UP_URL/v1/models/$m")
	case "$got" in
	*'"id":"'"$m"'"'*' 200') ok "troop up: GET /v1/models/$m" ;;
	*) chain_fail "GET /v1/models/$m: $got" ;;
	esac
done

# ---- chat and completions ----------------------------------------------------------------
cat >"$CHAIN_TMP/check.py" <<'PY'
# check.py KIND FILE: check a reply of the real engine that came through
# the troop.  KIND: chat, chat-stream, cmpl, cmpl-stream, embed.
import json, sys
kind, path = sys.argv[1], sys.argv[2]
raw = open(path).read()
if kind in ("chat", "cmpl", "embed"):
    r = json.loads(raw)
    if kind == "embed":
        v = r["data"][0]["embedding"]
        assert len(v) == 64 and all(isinstance(x, float) for x in v), r
        print("%d floats" % len(v))
        sys.exit(0)
    c = r["choices"][0]
    text = c["message"]["content"] if kind == "chat" else c["text"]
    assert isinstance(text, str) and r["usage"]["completion_tokens"] > 0, r
    assert r["object"] == ("chat.completion" if kind == "chat" else "text_completion"), r
    print("%d tokens" % r["usage"]["completion_tokens"])
    sys.exit(0)
events = [l[6:] for l in raw.splitlines() if l.startswith("data: ")]
assert events and events[-1] == "[DONE]", "stream does not end with [DONE]: %r" % raw[-300:]
chunks = [json.loads(e) for e in events[:-1]]
assert not any("error" in c for c in chunks), raw[-300:]
text = ""
for c in chunks:
    for ch in c.get("choices", []):
        text += (ch.get("delta", {}).get("content") or "") if kind == "chat-stream" else ch.get("text", "")
usage = [c["usage"] for c in chunks if c.get("usage")]
assert usage and usage[-1]["completion_tokens"] > 0, "no usage chunk"
print("%d events, %d chars, usage %s" % (len(chunks), len(text), usage[-1]["completion_tokens"]))
PY
post() { # post PATH BODY OUT: prints the status; headers in OUT.h
	curl -s -D "$3.h" -o "$3" -w '%{http_code}' "$UP_URL$1" -H 'Content-Type: application/json' \
		-d "$2"
}
job_of() { sed -n 's/^[Xx]-[Tt]roop-[Jj]ob: \([^[:space:]]*\).*/\1/p' "$1.h"; }
check_reply() { # check_reply NAME KIND PATH BODY
	local code msg=
	code=$(post "$3" "$4" "$CHAIN_TMP/$1")
	if [ "$code" = 200 ] && msg=$(python3 "$CHAIN_TMP/check.py" "$2" "$CHAIN_TMP/$1" 2>&1); then
		ok "$1: $msg"
	else
		chain_fail "$1: HTTP $code: $msg $(head -c 400 "$CHAIN_TMP/$1")"
	fi
}
CHAT='"model":"tiny-llama","messages":[{"role":"user","content":"Say hello"}]'
check_reply chat chat /v1/chat/completions "{$CHAT,\"max_tokens\":8}"
JOB_CHAT=$(job_of "$CHAIN_TMP/chat")
check_reply chat-stream chat-stream /v1/chat/completions \
	"{$CHAT,\"max_tokens\":8,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
check_reply completions cmpl /v1/completions \
	'{"model":"tiny-llama","prompt":"Once upon a time","max_tokens":8}'
check_reply completions-stream cmpl-stream /v1/completions \
	'{"model":"tiny-llama","prompt":"Once upon a time","max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}'
check_reply embeddings embed /v1/embeddings '{"model":"troop-test/tiny-embed","input":"hello"}'

# ---- a burst that fills the node, then one more (item 8) -------------------------------
# 8 requests take the worker's 8 slots; the moment they have answered, one
# more must be served at once: through a `troop up --wait 0`, so that a node
# still seen as full answers 503 instead of queueing
MAIN_URL=$UP_URL
chain_up burst "$COORD_URL" --wait 0
BURST_URL=$UP_URL
UP_URL=$MAIN_URL
bpids=""
for i in 1 2 3 4 5 6 7 8; do
	( curl -s -o /dev/null -w '%{http_code}' -m 120 "$BURST_URL/v1/chat/completions" \
		-H 'Content-Type: application/json' -d "{$CHAT,\"max_tokens\":4}" \
		>"$CHAIN_TMP/burst-$i.code" ) &
	bpids="$bpids $!"
done
wait $bpids
bcodes=$(cat "$CHAIN_TMP"/burst-*.code)
code=$(curl -s -o "$CHAIN_TMP/burst-after" -w '%{http_code}' -m 60 "$BURST_URL/v1/chat/completions" \
	-H 'Content-Type: application/json' -d "{$CHAT,\"max_tokens\":4}")
if [ "$bcodes" = 200200200200200200200200 ] && [ "$code" = 200 ]; then
	ok "burst: 8 requests filled the node, the next one was served at once"
else
	chain_fail "burst: codes $bcodes, then $code: $(head -c 300 "$CHAIN_TMP/burst-after")"
fi
# replies name the model as advertised, never by the engine's file path
# (llama-server A runs without --alias), whole and streamed
curl -s -N "$UP_URL/v1/chat/completions" -H 'Content-Type: application/json' \
	-d "{$CHAT,\"max_tokens\":4,\"stream\":true}" >"$CHAIN_TMP/stream-names"
names=$(python3 - "$CHAIN_TMP/burst-after" "$CHAIN_TMP/stream-names" <<'PY'
import json, sys
seen = {json.load(open(sys.argv[1])).get("model")}
for line in open(sys.argv[2]):
    if line.startswith("data: {"):
        seen.add(json.loads(line[6:]).get("model"))
print(" ".join(sorted(str(s) for s in seen)))
PY
)
if [ "$names" = tiny-llama ]; then
	ok "replies name the model 'tiny-llama', whole and streamed"
else
	chain_fail "replies name the model '$names' (the engine's file path leaks)"
fi

# ---- an engine error reaches the app ------------------------------------------------------
# A was started without --embeddings: llama-server answers 501
code=$(post /v1/embeddings '{"model":"tiny-llama","input":"hello"}' "$CHAIN_TMP/e501")
if [ "$code" = 501 ] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert "embeddings" in e["message"] and e["type"] and e["code"] != "no_capacity", e' \
	"$CHAIN_TMP/e501" 2>/dev/null; then
	ok "engine error: 501 with llama-server's own message"
else
	chain_fail "engine error: HTTP $code $(cat "$CHAIN_TMP/e501")"
fi
JOB_ERR=$(job_of "$CHAIN_TMP/e501")
grep -q "failover" "$CHAIN_TMP/up-main.log" &&
	chain_fail "troop up failed over on an engine error: $(grep failover "$CHAIN_TMP/up-main.log")"

# ---- a long prompt: headers at once, the first token much later ------------------------------
# llama-server sends a stream's headers when it starts reading the prompt,
# then nothing until the first token.  A prompt that takes ~5 s to read is
# far past troop up's 2 s first-byte timeout, and must not be cut by it.
python3 -c 'import json; print(json.dumps({"prompt": "hello world " * 2000, "n_predict": 1}))' \
	>"$CHAIN_TMP/calib.json"
# 4000 tokens take t ms; reading grows faster than linearly with length:
# aim at about 3 s, at most 20000 tokens: troop up estimates a prompt's
# tokens as its bytes / 4 (3 per "hello world ", where the tokenizer
# counts 2), and a request whose estimate passes engine A's 32768-token
# context is refused with a 400 before it is sent
words=$(curl -s "$ENGINE_A/completion" -H "Authorization: Bearer $KEY" -d @"$CHAIN_TMP/calib.json" |
	python3 -c 'import json,sys; t=json.load(sys.stdin)["timings"]["prompt_ms"]
print(min(10000, int(2000 * (3000.0 / max(t, 1.0)) ** (2.0 / 3))))')
echo "the long prompt is $((${words:-7000} * 2)) tokens"
python3 -c 'import json,sys; print(json.dumps({"model": "tiny-llama", "max_tokens": 4,
    "stream": True, "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "hello world " * int(sys.argv[1])}]}))' "${words:-7000}" \
	>"$CHAIN_TMP/long.json"
s=$(date +%s%N)
code=$(curl -s -o "$CHAIN_TMP/long-prompt" -w '%{http_code}' "$UP_URL/v1/chat/completions" \
	-H 'Content-Type: application/json' -d @"$CHAIN_TMP/long.json")
ms=$(( ($(date +%s%N) - s) / 1000000 ))
if [ "$code" = 200 ] && msg=$(python3 "$CHAIN_TMP/check.py" chat-stream "$CHAIN_TMP/long-prompt" 2>&1); then
	ok "long prompt streamed in $ms ms, past the 2 s first-byte timeout: $msg"
	[ "$ms" -gt 2500 ] || echo "note: the prompt took only $ms ms here: the timeout was not reached"
else
	chain_fail "long prompt: HTTP $code after $ms ms: $(head -c 400 "$CHAIN_TMP/long-prompt")"
fi

# ---- the official OpenAI SDK ------------------------------------------------------------------
# the long prompt again (keep-alive comments before the first token) and the
# engine's 501, through the npm package `openai` (installed once per build)
# the current major and v4, each installed once per build
if command -v node >/dev/null && command -v npm >/dev/null; then
	python3 -c 'import sys; sys.stdout.write("hello world " * int(sys.argv[1]))' "${words:-7000}" \
		>"$CHAIN_TMP/long-prompt.txt"
	for major in 6 4; do
		NODEDIR=$BUILD/node-openai-engine-v$major
		mkdir -p "$NODEDIR"
		if [ ! -f "$NODEDIR/node_modules/openai/package.json" ]; then
			echo '{"name":"troop-openai-engine-test","private":true,"type":"module"}' \
				>"$NODEDIR/package.json"
			(cd "$NODEDIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
				"openai@$major" >"$NODEDIR/npm-install.log" 2>&1) ||
				chain_fail "npm install openai@$major failed: $(tail -5 "$NODEDIR/npm-install.log")"
		fi
		v=$(node -e "console.log(require('$NODEDIR/node_modules/openai/package.json').version)" \
			2>/dev/null)
		[ "${v%%.*}" = "$major" ] || chain_fail "openai@$major: installed version is '$v'"
		cp "$HERE/openai_sdk_engine.mjs" "$NODEDIR/"
		if out=$(node "$NODEDIR/openai_sdk_engine.mjs" "$UP_URL" tiny-llama \
		    "$CHAIN_TMP/long-prompt.txt" 2>&1); then
			echo "$out" | sed "s/^/openai $v: /"
		else
			chain_fail "OpenAI SDK $v: $out"
		fi
	done
else
	chain_fail "node and npm are needed (scripts/install-deps.sh test)"
fi

# ---- the app goes away mid-stream ---------------------------------------------------------
cat >"$CHAIN_TMP/abort.py" <<'PY'
# abort.py URL BODY: read 3 content events of a stream, then hang up
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = sys.argv[2].encode()
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % (u.path.encode(), len(body)) + body)
buf = b""
while buf.count(b"data: {") < 3:
    d = s.recv(65536)
    if not d:
        sys.exit("stream ended early: %r" % buf[-300:])
    buf += d
s.close()
PY
if python3 "$CHAIN_TMP/abort.py" "$UP_URL/v1/chat/completions" \
	"{$CHAT,\"max_tokens\":30000,\"ignore_eos\":true,\"stream\":true}"; then
	s=$(date +%s%N)
	code=$(post /v1/chat/completions "{$CHAT,\"max_tokens\":4}" "$CHAIN_TMP/after-abort")
	ms=$(( ($(date +%s%N) - s) / 1000000 ))
	# one slot: had the engine gone on generating, this would wait for it
	if [ "$code" = 200 ] && [ "$ms" -lt 4000 ]; then
		ok "app gone mid-stream: the engine stopped (next request took $ms ms)"
	else
		chain_fail "after an abort: HTTP $code in $ms ms"
	fi
	for _ in $(seq 1 50); do grep -q "outcome=client_gone" "$W_LOG" && break; sleep 0.1; done
	grep -q "outcome=client_gone" "$W_LOG" || chain_fail "no client_gone job in the worker log"
else
	chain_fail "abort: the stream did not start"
fi

# ---- the engine dies mid-stream, then comes back ---------------------------------------------
: >"$CHAIN_TMP/died"
curl -sN "$UP_URL/v1/chat/completions" -H 'Content-Type: application/json' \
	-d "{$CHAT,\"max_tokens\":30000,\"ignore_eos\":true,\"stream\":true}" >>"$CHAIN_TMP/died" &
CURL=$!
for _ in $(seq 1 100); do
	[ "$(grep -c '^data: {' "$CHAIN_TMP/died")" -ge 3 ] && break
	sleep 0.05
done
kill -9 "$PID_A"
wait "$PID_A" 2>/dev/null
t_kill=$(date +%s%N)
wait "$CURL"
if grep -q '^data: {"error"' "$CHAIN_TMP/died" && ! grep -q 'DONE' "$CHAIN_TMP/died"; then
	ok "engine killed mid-stream: the stream ends with an error event and no [DONE]"
else
	chain_fail "engine killed mid-stream: $(tail -c 300 "$CHAIN_TMP/died")"
fi
gone=
for _ in $(seq 1 100); do
	if ! curl -s "$COORD_URL/v1/models" | grep -q '"tiny-llama"'; then gone=1; break; fi
	sleep 0.1
done
ms=$(( ($(date +%s%N) - t_kill) / 1000000 ))
[ -n "$gone" ] && [ "$ms" -lt 8000 ] && ok "dead engine's model withdrawn after $ms ms" ||
	chain_fail "the dead engine's model is still advertised after $ms ms"

start_llama a "$PORT_A" "${ARGS_A[@]}"
PID_A=$LLAMA_PID
t_back=$(date +%s%N)
back=
for _ in $(seq 1 100); do
	code=$(post /v1/chat/completions "{$CHAT,\"max_tokens\":4}" "$CHAIN_TMP/back")
	if [ "$code" = 200 ]; then back=1; break; fi
	sleep 0.1
done
ms=$(( ($(date +%s%N) - t_back) / 1000000 ))
[ -n "$back" ] && [ "$ms" -lt 8000 ] && ok "engine back: served again after $ms ms" ||
	chain_fail "engine restarted: still HTTP $code after $ms ms"

# ---- settlement ------------------------------------------------------------------------------
cat >"$CHAIN_TMP/settled.py" <<'PY'
# settled.py JOB WANT: the job is settled; WANT "charged" (credits > 0) or
# "free" (nothing charged, all released)
import json, sys
rows = [t for t in json.load(sys.stdin)["transactions"] if t["job_id"] == sys.argv[1]]
settle = [t for t in rows if t["type"] == "settle"]
if not settle:
    sys.exit(1)
charged = sum(t["credits"] for t in settle)
if sys.argv[2] == "charged":
    assert charged > 0, rows
else:
    assert charged == 0, rows
PY
for pair in "$JOB_CHAT charged" "$JOB_ERR free"; do
	set -- $pair
	done_=
	for _ in $(seq 1 100); do
		chain_troop transactions --json --limit 200 |
			python3 "$CHAIN_TMP/settled.py" "$1" "$2" 2>"$CHAIN_TMP/settled.err" &&
			{ done_=1; break; }
		[ -s "$CHAIN_TMP/settled.err" ] && break
		sleep 0.1
	done
	[ -n "$done_" ] && ok "job ${1:-?} settled, $2" ||
		chain_fail "job '${1:-}' not settled as $2: $(cat "$CHAIN_TMP/settled.err")"
done

if grep -qF -- "$KEY" "$CHAIN_TMP"/worker-*.log "$CHAIN_TMP"/up-*.log "$CHAIN_TMP"/coordinator*.log; then
	chain_fail "the engine API key shows in a log"
else
	ok "the engine API key is in no troop log"
fi
grep -q "Sanitizer\|runtime error:" "$W_LOG" && chain_fail "sanitizer report in the worker log"

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
