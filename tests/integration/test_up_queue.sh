#!/usr/bin/env bash
# test_up_queue.sh - `troop up` and `troop chat` wait in the coordinator's
# queue on the app's behalf (queue.h).  One worker with one job slot:
#   - two requests at once through `troop up`: both answer 200, the second
#     after waiting for the first (the app sees no error);
#   - a streamed request that waits behind a 60 s job keeps its connection
#     and gets its whole stream;
#   - meanwhile a `troop up --wait 1` answers 503 no_capacity saying the
#     wait ran out, and `troop chat --wait 4` shows its position on stderr;
#   - a streamed request that waits gets SSE comments ": queued, position
#     N" while it waits (so the app's connection does not time out), then
#     its stream; a non-streamed one that waits gets none (plain JSON); a
#     streamed one whose wait runs out after its comments began gets the
#     error event (no_capacity) at the end of its event stream.
# The worker's "started" notices keep the running job's slot taken past
# --unused-ticket: without them a second ticket would reach the worker
# and be refused 429.
set -u
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init

MODEL=llama3:8b
TPS=20
LONG_TOKENS=${LONG_TOKENS:-1220}   # about 61 s at $TPS tokens/s

chain_coordinator --unused-ticket 2
chain_sim a --tokens-per-second $TPS
chain_worker w "vllm=http://127.0.0.1:$SIM_PORT" --max-jobs 1 --donate always
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL" --wait 120
UP_MAIN=$UP_URL
chain_up short "$COORD_URL" --wait 1
UP_SHORT=$UP_URL
chain_up w4 "$COORD_URL" --wait 4
UP_W4=$UP_URL

body() { # body MAX_TOKENS STREAM
	printf '{"model":"%s","max_tokens":%d,"stream":%s,"messages":[{"role":"user","content":"queue"}]}' \
		"$MODEL" "$1" "$2"
}
post() { # post URL OUTFILE MAX_TOKENS STREAM: prints "status seconds"
	curl -s -o "$2" -w '%{http_code} %{time_total}' -m 200 -H 'Content-Type: application/json' \
		-d "$(body "$3" "$4")" "$1/v1/chat/completions"
}

# ---- two at once: the second waits, then succeeds ----------------------------------------
post "$UP_MAIN" "$CHAIN_TMP/a.json" 60 false >"$CHAIN_TMP/a.res" &
pa=$!
sleep 0.5
post "$UP_MAIN" "$CHAIN_TMP/b.json" 10 false >"$CHAIN_TMP/b.res" &
pb=$!
wait $pa $pb
read -r ca ta <"$CHAIN_TMP/a.res"
read -r cb tb <"$CHAIN_TMP/b.res"
[ "$ca" = 200 ] || chain_fail "first request: $ca $(head -c 300 "$CHAIN_TMP/a.json")"
[ "$cb" = 200 ] || chain_fail "second request (should have waited): $cb $(head -c 300 "$CHAIN_TMP/b.json")"
python3 -c "import sys; sys.exit(0 if float('$tb') >= 2.0 else 1)" ||
	chain_fail "the second request took $tb s: it did not wait for the first ($ta s)"
grep -q '"content"' "$CHAIN_TMP/b.json" || chain_fail "second request: no completion"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$CHAIN_TMP/b.json" && ! grep -q "queued" "$CHAIN_TMP/b.json" ||
	chain_fail "the non-streamed request that waited got more than its JSON: $(head -c 300 "$CHAIN_TMP/b.json")"
echo "ok: two requests on one slot: first $ca in $ta s, second $cb in $tb s"

# ---- a 60 s wait on a streamed request --------------------------------------------------
post "$UP_MAIN" "$CHAIN_TMP/long.json" "$LONG_TOKENS" false >"$CHAIN_TMP/long.res" &
plong=$!
sleep 1
post "$UP_MAIN" "$CHAIN_TMP/stream.txt" 10 true >"$CHAIN_TMP/stream.res" &
pstream=$!
sleep 1
# a client that waits 1 s only
read -r cs ts < <(post "$UP_SHORT" "$CHAIN_TMP/short.json" 10 false)
[ "$cs" = 503 ] || chain_fail "--wait 1: got $cs, want 503: $(head -c 300 "$CHAIN_TMP/short.json")"
grep -q 'no_capacity' "$CHAIN_TMP/short.json" && grep -q 'wait of 1 s' "$CHAIN_TMP/short.json" ||
	chain_fail "--wait 1: the error does not say the wait ran out: $(head -c 400 "$CHAIN_TMP/short.json")"
echo "ok: --wait 1 answered $cs after $ts s: $(head -c 200 "$CHAIN_TMP/short.json")"
# troop chat shows where it stands
chain_troop chat -m "$MODEL" --wait 4 "where am I" >"$CHAIN_TMP/chat.out" 2>"$CHAIN_TMP/chat.err"
grep -q 'queued, position 2' "$CHAIN_TMP/chat.err" ||
	chain_fail "troop chat did not show its queue position: $(cat "$CHAIN_TMP/chat.err")"
echo "ok: troop chat: $(grep -m1 'queued' "$CHAIN_TMP/chat.err")"
# a streamed request whose wait runs out after the comments began
read -r c4 t4 < <(post "$UP_W4" "$CHAIN_TMP/w4.txt" 10 true)
if [ "$c4" = 200 ] && grep -Eq '^: queued, (position [0-9]+|[0-9]+ waiting)$' "$CHAIN_TMP/w4.txt" &&
	grep -q '^data: {"error":.*no_capacity' "$CHAIN_TMP/w4.txt" && ! grep -q 'DONE' "$CHAIN_TMP/w4.txt"; then
	echo "ok: a streamed request whose wait ran out: comments, then the error event ($t4 s)"
else
	chain_fail "streamed request, wait 4 s: HTTP $c4: $(head -c 600 "$CHAIN_TMP/w4.txt")"
fi
wait $plong $pstream
read -r cl tl <"$CHAIN_TMP/long.res"
read -r cst tst <"$CHAIN_TMP/stream.res"
[ "$cl" = 200 ] || chain_fail "long request: $cl"
[ "$cst" = 200 ] || chain_fail "streamed request after the long one: $cst $(head -c 300 "$CHAIN_TMP/stream.txt")"
grep -q '^data: \[DONE\]' "$CHAIN_TMP/stream.txt" ||
	chain_fail "streamed request: no complete stream: $(head -c 300 "$CHAIN_TMP/stream.txt")"
python3 -c "import sys; sys.exit(0 if float('$tst') >= 55 else 1)" ||
	chain_fail "the streamed request took $tst s: it did not wait behind the $tl s job"
# the worker refuses only tickets fetched ahead (troop up's next ticket,
# which holds no slot: up_prefetch.h), never one the queue gave
for job in $(sed -n 's/.* job=\([^ ]*\) .*outcome=rejected.*/\1/p' "$CHAIN_TMP/worker-w.log"); do
	grep -q "failover job=$job .* ahead=1" "$CHAIN_TMP"/up-*.log ||
		chain_fail "the worker refused ticket $job (its slot was given away while busy)"
done
echo "ok: a streamed request waited $tst s behind a $tl s job and got its stream"
python3 - "$CHAIN_TMP/stream.txt" <<'PY' || chain_fail "queue comments: $(head -c 600 "$CHAIN_TMP/stream.txt")"
import re, sys
lines = open(sys.argv[1]).read().split("\n")
comments = [l for l in lines if l.startswith(": queued, ")]
first_data = next(i for i, l in enumerate(lines) if l.startswith("data: "))
assert len(comments) >= 15, "%d queue comments in about 60 s" % len(comments)
assert all(l.startswith(": queued, ") for l in lines[:first_data] if l), lines[:first_data]
# (the position is that of the account's latest waiting request: the
# other clients of this test share the account, so it may be theirs)
assert all(re.fullmatch(r": queued, (position \d+|\d+ waiting)", l) for l in comments), comments
print("ok: the streamed request got %d queue comments before its first event" % len(comments))
PY
[ "$CHAIN_FAILS" -eq 0 ]
