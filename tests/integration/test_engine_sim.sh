#!/usr/bin/env bash
# test_engine_sim.sh - checks the engine simulator (build/engine-sim, a test
# tool) against the recorded engine replies in $TROOP_FIXTURES: every
# endpoint's reply has the fixture's shape (same keys, nesting and JSON
# types), streams end properly (SSE "data: [DONE]", NDJSON "done":true),
# usage counts match what was streamed, unknown models and faults give the
# engines' error shapes, and the per-kind endpoints answer or not.
# labels: sim
set -u

BUILD=${TROOP_BUILD_DIR:-build}
SIM=$BUILD/engine-sim
FIX=${TROOP_FIXTURES:-}
command -v curl >/dev/null || { echo "skip: no curl"; exit 77; }
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }
[ -x "$SIM" ] || { echo "FAIL: $SIM not built"; exit 1; }
[ -n "$FIX" ] && [ -d "$FIX" ] || { echo "FAIL: TROOP_FIXTURES not set"; exit 1; }

. "$(dirname "$0")/troop_chain.sh"
chain_init troop-sim
TMP=$CHAIN_TMP

FAILS=0
fail() { chain_fail "$*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

# ---- python helpers -----------------------------------------------------------
cat > "$TMP/check.py" <<'PY'
import json, sys

def kind(v):
    if isinstance(v, bool): return "bool"
    if isinstance(v, int): return "int"
    if isinstance(v, float): return "float"
    if isinstance(v, str): return "str"
    if v is None: return "null"
    if isinstance(v, list): return "list"
    return "object"

def same_shape(got, want, path="$"):
    """Keys, nesting and types of `got` equal those of `want`."""
    errs = []
    kg, kw = kind(got), kind(want)
    if kg != kw:
        return ["%s: type %s, fixture has %s" % (path, kg, kw)]
    if kg == "object":
        if set(got) != set(want):
            errs.append("%s: keys differ: extra %s, missing %s" % (path,
                sorted(set(got) - set(want)), sorted(set(want) - set(got))))
        for k in set(got) & set(want):
            errs += same_shape(got[k], want[k], path + "." + k)
    elif kg == "list" and got and want:
        for i, item in enumerate(got):
            errs += same_shape(item, want[0], "%s[%d]" % (path, i))
    return errs

def load(p):
    with open(p, "rb") as f:
        return f.read().decode()

def sse_events(text):
    """The data payloads of an SSE body; fails on a malformed body."""
    if not text.endswith("\n\n"):
        raise SystemExit("SSE body does not end with a blank line")
    out = []
    for block in text.split("\n\n")[:-1]:
        if not block.startswith("data: ") or "\n" in block:
            raise SystemExit("bad SSE event: %r" % block[:80])
        out.append(block[len("data: "):])
    return out

def report(errs, what):
    if errs:
        print("\n".join(what + ": " + e for e in errs))
        sys.exit(1)

cmd = sys.argv[1]
if cmd == "shape":            # shape GOT_FILE FIXTURE_FILE
    report(same_shape(json.loads(load(sys.argv[2])), json.loads(load(sys.argv[3]))),
           sys.argv[3])
elif cmd == "sse-chat":       # sse-chat GOT FIXTURE PROMPT_WORDS MAX_TOKENS WHOLE_JSON
    got = sse_events(load(sys.argv[2]))
    want = sse_events(load(sys.argv[3]))
    pw, mt = int(sys.argv[4]), int(sys.argv[5])
    if got[-1] != "[DONE]" or want[-1] != "[DONE]":
        raise SystemExit("stream does not end with data: [DONE]")
    got = [json.loads(e) for e in got[:-1]]
    want = [json.loads(e) for e in want[:-1]]
    errs = same_shape(got[0], want[0], "role chunk")
    content = got[1:-2]
    for i, e in enumerate(content):
        errs += same_shape(e, want[1], "content chunk %d" % i)
    errs += same_shape(got[-2], want[-2], "finish chunk")
    errs += same_shape(got[-1], want[-1], "usage chunk")
    if got[-1]["choices"] != []:
        errs.append("usage chunk has choices")
    u = got[-1]["usage"]
    if u["completion_tokens"] != len(content) or len(content) != mt:
        errs.append("completion_tokens %d, content chunks %d, max_tokens %d" %
                    (u["completion_tokens"], len(content), mt))
    if u["prompt_tokens"] != pw or u["total_tokens"] != pw + len(content):
        errs.append("usage %r for %d prompt words" % (u, pw))
    if len({e["id"] for e in got}) != 1:
        errs.append("chunks carry different ids")
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in got[:-1])
    whole = json.loads(load(sys.argv[6]))
    if text != whole["choices"][0]["message"]["content"]:
        errs.append("streamed text %r differs from the whole reply %r" %
                    (text, whole["choices"][0]["message"]["content"]))
    if whole["usage"]["completion_tokens"] != mt:
        errs.append("whole reply completion_tokens %r" % whole["usage"])
    report(errs, "chat stream")
elif cmd == "sse-done":       # sse-done GOT: ends with [DONE], every event JSON
    ev = sse_events(load(sys.argv[2]))
    if ev[-1] != "[DONE]":
        raise SystemExit("stream does not end with data: [DONE]")
    for e in ev[:-1]:
        json.loads(e)
    print(len(ev) - 1)
elif cmd == "ndjson":         # ndjson GOT FIXTURE MAX_TOKENS WHOLE_JSON
    got = [json.loads(l) for l in load(sys.argv[2]).splitlines()]
    want = [json.loads(l) for l in load(sys.argv[3]).splitlines()]
    mt = int(sys.argv[4])
    errs = []
    for i, line in enumerate(got[:-1]):
        errs += same_shape(line, want[0], "line %d" % i)
        if line["done"] is not False:
            errs.append("line %d is done before the end" % i)
    errs += same_shape(got[-1], want[-1], "last line")
    if got[-1]["done"] is not True:
        errs.append("last line is not done:true")
    if got[-1]["eval_count"] != len(got) - 1 or len(got) - 1 != mt:
        errs.append("eval_count %d for %d content lines (max %d)" %
                    (got[-1]["eval_count"], len(got) - 1, mt))
    whole = json.loads(load(sys.argv[5]))
    text = "".join(l["message"]["content"] for l in got)
    if text != whole["message"]["content"]:
        errs.append("streamed text differs from the whole reply")
    report(errs, "ndjson")
elif cmd == "get":            # get FILE KEY[.KEY...]
    v = json.loads(load(sys.argv[2]))
    for k in sys.argv[3].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v)
elif cmd == "count":          # count FILE KEY: length of a list
    print(len(json.loads(load(sys.argv[2]))[sys.argv[3]]))
else:
    raise SystemExit("unknown command " + cmd)
PY
check() { python3 "$TMP/check.py" "$@"; }

# ---- starting simulators ----------------------------------------------------------
# start_sim NAME ARGS...: sets PORT; the simulator's first line is
# "listening on 127.0.0.1:PORT" once bound.
start_sim() {
	local name=$1 line
	chain_sim "$@"
	PORT=$SIM_PORT
	line=$(head -n1 "$CHAIN_TMP/sim-$name.log")
	case "$line" in
	"listening on 127.0.0.1:$PORT") ;;
	*) echo "FAIL: $name printed '$line'"; exit 1 ;;
	esac
}

# http METHOD URL OUTFILE [BODY]: prints the status
http() {
	if [ $# -ge 4 ]; then
		curl -s -o "$3" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
			--data-binary "$4" "$2"
	else
		curl -s -o "$3" -w '%{http_code}' -X "$1" "$2"
	fi
}

expect_status() { # expect_status WANT GOT WHAT
	if [ "$2" = "$1" ]; then ok "$3 -> $2"; else fail "$3: status $2, want $1"; fi
}

shape() { # shape GOT FIXTURE WHAT
	if check shape "$1" "$FIX/$2"; then ok "$3 shape matches $2"; else fail "$3 shape"; fi
}

# ---- every endpoint, default kind (all) --------------------------------------------
start_sim main --tokens-per-second 0 --models llama3:8b,qwen2.5:7b-instruct
B=http://127.0.0.1:$PORT

for pair in "/api/version ollama_version.json" "/api/tags ollama_tags.json" \
	"/api/ps ollama_ps.json" "/v1/models openai_models.json" \
	"/version vllm_version.json" "/health llamacpp_health.json" \
	"/props llamacpp_props.json" "/api/v0/models lmstudio_models_v0.json"; do
	set -- $pair
	st=$(http GET "$B$1" "$TMP/out.json")
	expect_status 200 "$st" "GET $1"
	shape "$TMP/out.json" "$2" "GET $1"
done
n=$(check count "$TMP/out.json" data)
[ "$n" = 2 ] && ok "two models listed" || fail "/api/v0/models lists $n models"

PROMPT='why is the sky blue'
CHAT='{"model":"llama3:8b","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"'$PROMPT'"}],"max_tokens":7'
st=$(http POST "$B/v1/chat/completions" "$TMP/chat.json" "$CHAT}")
expect_status 200 "$st" "POST /v1/chat/completions"
shape "$TMP/chat.json" openai_chat.json "chat completion"
st=$(http POST "$B/v1/chat/completions" "$TMP/chat.sse" \
	"$CHAT"',"stream":true,"stream_options":{"include_usage":true}}')
expect_status 200 "$st" "POST /v1/chat/completions stream"
if check sse-chat "$TMP/chat.sse" "$FIX/openai_chat_stream.sse" 7 7 "$TMP/chat.json"; then
	ok "chat stream: shapes, [DONE], usage, text equals the whole reply"
else
	fail "chat stream"
fi
# without include_usage there is no usage chunk
http POST "$B/v1/chat/completions" "$TMP/chat2.sse" "$CHAT"',"stream":true}' >/dev/null
if grep -q '"usage"' "$TMP/chat2.sse"; then fail "usage chunk without include_usage"
else ok "no usage chunk unless asked"; fi
# the same prompt gives the same text
http POST "$B/v1/chat/completions" "$TMP/chat3.json" "$CHAT}" >/dev/null
a=$(check get "$TMP/chat.json" choices.0.message.content)
b=$(check get "$TMP/chat3.json" choices.0.message.content)
[ "$a" = "$b" ] && [ -n "$a" ] && ok "deterministic text" || fail "text differs: '$a' vs '$b'"
# default length is 16 tokens
http POST "$B/v1/chat/completions" "$TMP/chat4.json" \
	'{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}]}' >/dev/null
n=$(check get "$TMP/chat4.json" usage.completion_tokens)
r=$(check get "$TMP/chat4.json" choices.0.finish_reason)
[ "$n" = 16 ] && [ "$r" = stop ] && ok "default 16 tokens, stop" || fail "default: $n tokens, $r"

OLL='{"model":"qwen2.5:7b-instruct","messages":[{"role":"user","content":"'$PROMPT'"}],"options":{"num_predict":5}'
st=$(http POST "$B/api/chat" "$TMP/ochat.json" "$OLL"',"stream":false}')
expect_status 200 "$st" "POST /api/chat stream:false"
shape "$TMP/ochat.json" ollama_chat.json "ollama chat"
st=$(http POST "$B/api/chat" "$TMP/ochat.ndjson" "$OLL}")
expect_status 200 "$st" "POST /api/chat (streams by default)"
if check ndjson "$TMP/ochat.ndjson" "$FIX/ollama_chat_stream.ndjson" 5 "$TMP/ochat.json"; then
	ok "ndjson stream: shapes, done:true last, eval_count"
else
	fail "ndjson stream"
fi

st=$(http POST "$B/v1/completions" "$TMP/cmpl.sse" \
	'{"model":"llama3:8b","prompt":"once upon a time","max_tokens":4,"stream":true}')
expect_status 200 "$st" "POST /v1/completions stream"
n=$(check sse-done "$TMP/cmpl.sse") && [ "$n" = 5 ] && ok "completions stream: 4 tokens + finish, [DONE]" \
	|| fail "completions stream ($n events)"
st=$(http POST "$B/v1/completions" "$TMP/cmpl.json" \
	'{"model":"llama3:8b","prompt":"once upon a time","max_tokens":4}')
expect_status 200 "$st" "POST /v1/completions"
n=$(check get "$TMP/cmpl.json" usage.prompt_tokens)
[ "$n" = 4 ] && ok "completions prompt_tokens" || fail "completions prompt_tokens $n"
st=$(http POST "$B/v1/embeddings" "$TMP/emb.json" '{"model":"llama3:8b","input":["a b","c"]}')
expect_status 200 "$st" "POST /v1/embeddings"
n=$(check count "$TMP/emb.json" data)
[ "$n" = 2 ] && ok "two embeddings" || fail "$n embeddings for 2 inputs"

# errors
st=$(http POST "$B/v1/chat/completions" "$TMP/err.json" '{"model":"llama9","messages":[]}')
expect_status 404 "$st" "unknown model on /v1"
shape "$TMP/err.json" openai_error.json "unknown model /v1"
st=$(http POST "$B/api/chat" "$TMP/err.json" '{"model":"llama9","messages":[]}')
expect_status 404 "$st" "unknown model on /api/chat"
shape "$TMP/err.json" ollama_error.json "unknown model /api/chat"
st=$(http POST "$B/v1/chat/completions" "$TMP/err.json" 'not json')
expect_status 400 "$st" "malformed body"
st=$(http POST "$B/v1/chat/completions" "$TMP/err.json" '{"model":"llama3:8b","messages":[],"max_tokens":0}')
expect_status 400 "$st" "max_tokens 0"
st=$(http GET "$B/v1/chat/completions" "$TMP/err.json")
expect_status 405 "$st" "GET on a POST endpoint"
st=$(http GET "$B/nope" "$TMP/err.json")
expect_status 404 "$st" "unknown path"
head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' 'a' > "$TMP/big.txt"
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary @"$TMP/big.txt" "$B/v1/chat/completions")
expect_status 413 "$st" "body over 4 MiB"

# ---- many concurrent streams, paced by timers -------------------------------------
start_sim conc --tokens-per-second 50
C=http://127.0.0.1:$PORT
CURLS=()
for i in $(seq 1 20); do
	curl -s -o "$TMP/par$i.sse" -H 'Content-Type: application/json' \
		--data-binary '{"model":"llama3:8b","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"n'$i'"}]}' \
		"$C/v1/chat/completions" &
	CURLS+=($!)
done
# each stream takes 2 s; all 20 must be in flight at once
max_active=0
for i in $(seq 1 60); do
	http GET "$C/sim/stats" "$TMP/st.json" >/dev/null
	a=$(check get "$TMP/st.json" active)
	[ "$a" -gt "$max_active" ] && max_active=$a
	[ "$max_active" = 20 ] && break
	sleep 0.05
done
[ "$max_active" = 20 ] && ok "20 streams in flight at once" \
	|| fail "at most $max_active of 20 streams in flight at once"
wait_ok=1
for j in "${CURLS[@]}"; do wait "$j" || wait_ok=0; done
good=0
for i in $(seq 1 20); do
	n=$(check sse-done "$TMP/par$i.sse" 2>/dev/null) && [ "$n" = 102 ] && good=$((good + 1))
done
[ "$good" = 20 ] && [ "$wait_ok" = 1 ] && ok "20 concurrent streams complete" \
	|| fail "$good of 20 concurrent streams complete"
http GET "$C/sim/stats" "$TMP/stats1.json" >/dev/null
n=$(check get "$TMP/stats1.json" chat_requests)
[ "$n" = 20 ] && ok "/sim/stats counts chat requests" || fail "/sim/stats chat_requests $n"
n=$(check get "$TMP/stats1.json" active)
[ "$n" = 0 ] && ok "no stream left active" || fail "$n streams still active"

# ---- no delayed-ACK stall at a stream's end ---------------------------------------
# Without TCP_NODELAY the last small write of a reply waits for the ACK of
# the one before, which the client delays (40 ms): short streams one after
# another on a keep-alive connection then take 40 ms each.
start_sim nodelay --tokens-per-second 0
ms=$(python3 - "$PORT" <<'PY'
import http.client, json, statistics, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = json.dumps({"model": "llama3:8b", "stream": True, "max_tokens": 5, "messages": []})
ts = []
for _ in range(20):
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    c.getresponse().read()
    ts.append((time.perf_counter() - t0) * 1000)
print("%.1f" % statistics.median(ts))
PY
)
if python3 -c "import sys; sys.exit(0 if float('$ms') < 30 else 1)" 2>/dev/null; then
	ok "short streams on a keep-alive connection: median $ms ms (no 40 ms delayed-ACK stall)"
else
	fail "short streams take a median $ms ms each: the end of a reply waits for a delayed ACK"
fi

# ---- a client leaving mid-stream is noticed ---------------------------------------
start_sim slowclient --tokens-per-second 50
curl -s -o /dev/null --max-time 0.3 -H 'Content-Type: application/json' \
	--data-binary '{"model":"llama3:8b","stream":true,"max_tokens":500,"messages":[]}' \
	"http://127.0.0.1:$PORT/v1/chat/completions"
seen=0
for i in $(seq 1 40); do
	http GET "http://127.0.0.1:$PORT/sim/stats" "$TMP/st.json" >/dev/null
	if [ "$(check get "$TMP/st.json" disconnects)" = 1 ] &&
	   [ "$(check get "$TMP/st.json" active)" = 0 ]; then seen=1; break; fi
	sleep 0.1
done
[ "$seen" = 1 ] && ok "disconnect noticed, stream freed" || fail "disconnect not noticed"

# ---- faults -------------------------------------------------------------------------
start_sim f500 --fault 500
st=$(http POST "http://127.0.0.1:$PORT/v1/chat/completions" "$TMP/f500.json" "$CHAT}")
expect_status 500 "$st" "fault 500 chat"
shape "$TMP/f500.json" openai_error.json "fault 500"
st=$(http GET "http://127.0.0.1:$PORT/v1/models" "$TMP/out.json")
expect_status 200 "$st" "fault 500 leaves listings alone"

start_sim fdie --fault die-mid-stream --fault-after 3 --tokens-per-second 0
curl -s -o "$TMP/die.sse" -H 'Content-Type: application/json' \
	--data-binary "$CHAT"',"stream":true}' "http://127.0.0.1:$PORT/v1/chat/completions"
rc=$?
events=$(grep -c '^data: ' "$TMP/die.sse")
if [ "$rc" != 0 ] && [ "$events" = 3 ] && ! grep -q DONE "$TMP/die.sse"; then
	ok "die-mid-stream: connection closed after 3 events (curl rc $rc)"
else
	fail "die-mid-stream: curl rc $rc, $events events"
fi
st=$(http GET "http://127.0.0.1:$PORT/v1/models" "$TMP/out.json")
expect_status 200 "$st" "simulator alive after die-mid-stream"

start_sim fhang --fault hang
curl -s -o /dev/null --max-time 0.5 -H 'Content-Type: application/json' \
	--data-binary "$CHAT}" "http://127.0.0.1:$PORT/v1/chat/completions"
rc=$?
[ "$rc" = 28 ] && ok "hang: no answer (curl timed out)" || fail "hang: curl rc $rc"

start_sim fproc --fault die-process --fault-after 2 --tokens-per-second 0
procpid=$SIM_PID
curl -s -o "$TMP/proc.sse" -H 'Content-Type: application/json' \
	--data-binary "$CHAT"',"stream":true}' "http://127.0.0.1:$PORT/v1/chat/completions"
wait "$procpid"
rc=$?
[ "$rc" = 1 ] && ok "die-process: exited 1" || fail "die-process: exit $rc"

# ---- kinds ------------------------------------------------------------------------
start_sim kvllm --version-kind vllm
B=http://127.0.0.1:$PORT
expect_status 404 "$(http GET "$B/api/version" "$TMP/out.json")" "vllm kind: /api/version"
expect_status 404 "$(http GET "$B/props" "$TMP/out.json")" "vllm kind: /props"
expect_status 200 "$(http GET "$B/version" "$TMP/out.json")" "vllm kind: /version"
expect_status 200 "$(http GET "$B/health" "$TMP/out.json")" "vllm kind: /health"
[ ! -s "$TMP/out.json" ] && ok "vllm /health body is empty" || fail "vllm /health has a body"

for pair in "llamacpp openai_error_llamacpp.json" "lmstudio openai_error_lmstudio.json" \
	"ollama openai_error_ollama.json"; do
	set -- $pair
	start_sim "k$1" --version-kind "$1"
	B=http://127.0.0.1:$PORT
	st=$(http POST "$B/v1/chat/completions" "$TMP/err.json" '{"model":"llama9","messages":[]}')
	expect_status 404 "$st" "$1 kind: unknown model"
	shape "$TMP/err.json" "$2" "$1 kind unknown model"
done
expect_status 404 "$(http GET "$B/version" "$TMP/out.json")" "ollama kind: /version"
expect_status 200 "$(http GET "$B/api/tags" "$TMP/out.json")" "ollama kind: /api/tags"

start_sim kload --version-kind llamacpp --loading-ms 60000
st=$(http GET "http://127.0.0.1:$PORT/health" "$TMP/out.json")
expect_status 503 "$st" "loading: /health"
shape "$TMP/out.json" llamacpp_health_loading.json "loading /health"

# --help and bad options
"$SIM" --help | grep -q 'TEST TOOL' && ok "--help" || fail "--help"
"$SIM" --fault nonsense 2>/dev/null && fail "bad --fault accepted" || ok "bad --fault refused"

# every simulator still running shuts down cleanly on SIGTERM (under ASan this
# also checks that nothing leaked)
for p in "${CHAIN_PIDS[@]}"; do
	[ "$p" = "$procpid" ] && continue
	kill -TERM "$p" 2>/dev/null
	wait "$p"
	rc=$?
	[ "$rc" = 0 ] || fail "simulator $p exited $rc on SIGTERM"
done
CHAIN_PIDS=()
for f in "$TMP"/sim-*.log; do
	if grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error' "$f"; then
		fail "sanitizer report in $(basename "$f")"; cat "$f"
	fi
done

if [ "$FAILS" != 0 ]; then
	echo "$FAILS check(s) failed"
	exit 1
fi
echo "all engine-sim checks passed"
