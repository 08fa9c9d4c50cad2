#!/usr/bin/env bash
# test_up_curl.sh - `troop up` end to end as curl sees it: a coordinator,
# engine simulators, two real `troop worker`s and the proxy on loopback.
#   - `curl -N` gets the events one by one as the engine paces them, the
#     text the engine would give directly, an X-Troop-Job header naming a
#     job that shows in `troop transactions`;
#   - `troop chat` streams through the same chain;
#   - failover: one worker killed (SIGKILL: it cannot say goodbye, the
#     coordinator still lists it), every request still succeeds;
#   - every worker busy: 503 no_capacity; no credits: 402
#     insufficient_credits with the balance and the price.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init
ok() { echo "ok: $*"; }

MODEL=llama3:8b
TPS=20
PROMPT="curl streams through the troop"
body() { # body STREAM [MAX_TOKENS]
	printf '{"model":"%s","stream":%s,%s"messages":[{"role":"user","content":"%s"}]}' \
		"$MODEL" "$1" "${2:+\"max_tokens\":$2,}" "$PROMPT"
}

chain_coordinator --node-ttl 30
chain_sim a --tokens-per-second $TPS
SIM_A=$SIM_PORT
chain_sim b --tokens-per-second $TPS
SIM_B=$SIM_PORT
# w1, the one that will be killed, takes many more jobs at once (see the
# failover part below)
chain_worker w1 "vllm=http://127.0.0.1:$SIM_A" --max-jobs 1000 --donate always
W1_PID=$WORKER_PID
chain_worker w2 "vllm=http://127.0.0.1:$SIM_B" --max-jobs 8 --donate always
W2_PID=$WORKER_PID
chain_wait_nodes "$MODEL" 2
chain_up main "$COORD_URL" --first-byte-timeout 5
MAIN_UP_PID=$UP_PID

# what the engine answers, asked directly
WANT=$(curl -s "http://127.0.0.1:$SIM_A/v1/chat/completions" -d "$(body false)" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ -n "$WANT" ] || { echo "FAIL: the simulator gave no answer"; exit 1; }

# ---- curl -N: events as they come ------------------------------------------------
cat >"$CHAIN_TMP/stamp.py" <<'PY'
# stamp.py CMD...: run CMD (curl -N) and print "<ms since start> <line>"
# for each line of its output as it comes.  Started before curl, so that
# the clock does not start late.
import subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
for line in iter(p.stdout.readline, b""):
    sys.stdout.write("%.1f %s" % ((time.monotonic() - t0) * 1000, line.decode()))
    sys.stdout.flush()
sys.exit(p.wait())
PY
cat >"$CHAIN_TMP/check.py" <<'PY'
# check.py STAMPED WANT TPS: the events are the engine's answer, end with
# [DONE], and arrived spread out at the engine's pace (not in one burst).
import json, sys
lines = [l.rstrip("\n").split(" ", 1) for l in open(sys.argv[1]) if " data: " in l]
want, tps = sys.argv[2], float(sys.argv[3])
assert lines and lines[-1][1] == "data: [DONE]", "stream does not end with [DONE]"
times, text = [], ""
for t, l in lines[:-1]:
    ev = json.loads(l[len("data: "):])
    for c in ev.get("choices", []):
        d = c.get("delta", {}).get("content")
        if d:
            text += d
            times.append(float(t))
assert text == want, "streamed %r, engine says %r" % (text, want)
span = times[-1] - times[0]
need = (len(times) - 1) * 1000.0 / tps * 0.6
assert span >= need, "%d deltas within %.0f ms (paced, they need %.0f): buffered" % (
    len(times), span, need)
print("%d deltas over %.0f ms" % (len(times), span))
PY
python3 -u "$CHAIN_TMP/stamp.py" curl -sN -D "$CHAIN_TMP/h1" "$UP_URL/v1/chat/completions" \
	-H 'Content-Type: application/json' -d "$(body true)" >"$CHAIN_TMP/s1"
if msg=$(python3 "$CHAIN_TMP/check.py" "$CHAIN_TMP/s1" "$WANT" $TPS 2>&1); then
	ok "curl -N streams: $msg"
else
	chain_fail "curl -N: $msg"
fi
grep -qi '^content-type: text/event-stream' "$CHAIN_TMP/h1" || chain_fail "no event-stream content type"
JOB=$(sed -n 's/^[Xx]-[Tt]roop-[Jj]ob: \([^[:space:]]*\).*/\1/p' "$CHAIN_TMP/h1")
if [ -n "$JOB" ] && chain_troop transactions --limit 50 | grep -qF -- "$JOB"; then
	ok "X-Troop-Job $JOB shows in troop transactions"
else
	chain_fail "X-Troop-Job '$JOB' missing or not in troop transactions"
fi

# the worker's signed receipt settles the job: the requester sees the charge
# and the refund, the worker's account the earnings
settled=
for _ in $(seq 1 100); do
	if chain_troop transactions --json --limit 50 | python3 -c '
import json, sys
rows = [t for t in json.load(sys.stdin)["transactions"] if t["job_id"] == sys.argv[1]]
sys.exit(0 if any(t["type"] == "settle" for t in rows) else 1)' "$JOB"; then
		settled=1
		break
	fi
	sleep 0.1
done
if [ -n "$settled" ]; then
	line=$(chain_troop transactions --limit 50 | grep -F -- "$JOB" | grep settle)
	echo "$line" | grep -q "charged from the hold" && ok "job $JOB settled: $line" ||
		chain_fail "settle row reads: $line"
	W1_LINE=$(TROOP_HOME=$CHAIN_TMP/home-worker-w1 TROOP_COORDINATOR=$COORD_URL "$TROOP" \
		transactions --limit 50 | grep -F -- "$JOB" | grep settle)
	W2_LINE=$(TROOP_HOME=$CHAIN_TMP/home-worker-w2 TROOP_COORDINATOR=$COORD_URL "$TROOP" \
		transactions --limit 50 | grep -F -- "$JOB" | grep settle)
	echo "$W1_LINE$W2_LINE" | grep -q "earned serving" &&
		ok "the serving worker's account shows the earnings" ||
		chain_fail "no 'earned' settle row for $JOB on either worker"
else
	chain_fail "job $JOB was not settled within 10 s (no receipt?)"
fi
BAL=$(chain_troop balance --json)
python3 -c 'import json,sys; b=json.loads(sys.argv[1]); assert b["balance_seconds"] == b["available_seconds"] + b["reserved_seconds"] and b["balance_seconds"] < 3600, b' "$BAL" &&
	ok "troop balance: the spent credits are gone, balance = available + reserved" ||
	chain_fail "balance after a settled job: $BAL"

# a whole (non-streamed) reply through the same chain
GOT=$(curl -s "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body false)" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ "$GOT" = "$WANT" ] && ok "whole reply" || chain_fail "whole reply: '$GOT'"

# troop chat through a real worker
GOT=$(chain_troop chat -m "$MODEL" "$PROMPT" 2>"$CHAIN_TMP/chat.err")
[ "$GOT" = "$WANT" ] && ok "troop chat streams through a worker" ||
	chain_fail "troop chat printed '$GOT' ($(cat "$CHAIN_TMP/chat.err"))"

# ---- failover: kill one worker without warning -------------------------------------------
# Two long streams first: the coordinator puts one on each worker (least
# loaded first).  The one on w1 dies with it and w1's job count stays up at
# 1/1000; w2's stays at 1/8 while its stream runs, so w1 is chosen first
# and every request below must fail over.
BG=()
for _ in 1 2; do
	curl -sN "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body true 200)" >/dev/null 2>&1 &
	BG+=($!)
	sleep 0.2
done
{ kill -9 "$W1_PID"; wait "$W1_PID"; } 2>/dev/null
fails=0
for i in $(seq 1 12); do
	GOT=$(curl -s -w '\n%{http_code}' "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body false 4)")
	code=${GOT##*$'\n'}
	[ "$code" = 200 ] || { fails=$((fails + 1)); echo "request $i: $GOT"; }
	grep -q "failover" "$CHAIN_TMP/up-main.log" && [ "$i" -ge 4 ] && break
done
for p in "${BG[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
if [ "$fails" = 0 ] && grep -q "failover" "$CHAIN_TMP/up-main.log"; then
	ok "one worker killed: $i requests all succeeded, failing over"
else
	chain_fail "with one worker killed: $fails failed requests, failover logged: \
$(grep -c failover "$CHAIN_TMP/up-main.log")"
fi

# ---- every worker busy: 503 -------------------------------------------------------------------
# w3 takes one job at a time; a long stream holds it, w1 is dead, w2 stops
chain_worker w3 "vllm=http://127.0.0.1:$SIM_A" --max-jobs 1 --donate always
chain_stop_clean "$W2_PID" "$CHAIN_TMP/worker-w2.log" "troop worker w2 (drained)"
sleep 0.5
chain_wait_nodes "$MODEL" 1
# (troop up waits in the coordinator's queue by default, test_up_queue.sh:
# one with --wait 0 answers at once)
SAVE_URL=$UP_URL SAVE_PID=$UP_PID
chain_up nowait "$COORD_URL" --wait 0
NOWAIT_URL=$UP_URL NOWAIT_PID=$UP_PID
UP_URL=$SAVE_URL UP_PID=$SAVE_PID
curl -sN "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body true 200)" >/dev/null &
HOLD=$!
sleep 0.5
RESP=$(curl -s -w '\n%{http_code}' "$NOWAIT_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body false 4)")
code=${RESP##*$'\n'}
if [ "$code" = 503 ] && echo "$RESP" | grep -q '"code":"no_capacity"'; then
	ok "every worker busy: 503 no_capacity"
else
	chain_fail "busy: expected 503 no_capacity, got $RESP"
fi
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null
chain_stop_clean "$NOWAIT_PID" "$CHAIN_TMP/up-nowait.log" "troop up --wait 0"

# ---- no credits: 402 -----------------------------------------------------------------------------
RICH_COORD=$COORD_URL
chain_coordinator --starter-credits 0
chain_worker poor "vllm=http://127.0.0.1:$SIM_B" --donate always
chain_wait_nodes "$MODEL" 1
CLIENT_HOME=$CHAIN_TMP/home-poor chain_up poor "$COORD_URL"
RESP=$(curl -s -w '\n%{http_code}' "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body false 4)")
code=${RESP##*$'\n'}
if [ "$code" = 402 ] && echo "$RESP" | grep -q '"code":"insufficient_credits"' &&
	echo "$RESP" | grep -q 'available 0' && echo "$RESP" | grep -q 'price'; then
	ok "no credits: 402 insufficient_credits with balance and price"
else
	chain_fail "no credits: expected 402, got $RESP"
fi
COORD_URL=$RICH_COORD

chain_stop_clean "$UP_PID" "$CHAIN_TMP/up-poor.log" "troop up (no credits)"
chain_stop_clean "$MAIN_UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "all ok"
