#!/usr/bin/env bash
# test_up_prefetch.sh - tickets fetched ahead (src/client/up_prefetch.h)
# through the real binaries: a coordinator, engine simulators, workers and
# `troop up`.
#   - after a session's first request, troop up holds one ticket for the
#     model's next request; that request goes to the worker without an
#     /authorize round trip (the coordinator sees no /authorize between the
#     request and the worker's answer) and its job is the ticket's;
#   - a ticket fetched ahead holds no slot: with the node's only slot
#     (--max-jobs 1) free, another client is served at once (with a plain
#     hold it would get 503 for the coordinator's --unused-ticket seconds);
#   - its credits are held, and shown (troop_up_prefetch_held_credits
#     equals what the ticket reserved);
#   - a ticket whose node went away fails over to another node like any
#     other, and the app gets its answer;
#   - --prefetch-idle 0 (the default) turns it off: every request authorizes.
set -u
. "$(dirname "$0")/troop_chain.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
chain_init

MODEL=prefetch:1b
chain_coordinator --unused-ticket 30 --log-level debug
chain_sim a --models "$MODEL"
SIM_A=$SIM_PORT
chain_worker a "ollama=http://127.0.0.1:$SIM_A" --donate always --no-verify --max-jobs 1
WA_PID=$WORKER_PID
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL" --metrics-listen 127.0.0.1:0 --wait 0 --prefetch-idle 60
MAIN_PID=$UP_PID
MAIN_URL=$UP_URL
UM_PORT=$(chain_port_from_log "$CHAIN_TMP/up-main.log" metrics_started "$UP_PID") || exit 1
ok() { echo "ok: $*"; }

chat() { # chat URL OUT: prints the status; headers in OUT.h
	curl -s -D "$2.h" -o "$2" -w '%{http_code}' -m 30 "$1/v1/chat/completions" \
		-H 'Content-Type: application/json' \
		-d "{\"model\":\"$MODEL\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
}
job_of() { sed -n 's/^[Xx]-[Tt]roop-[Jj]ob: \([^[:space:]]*\).*/\1/p' "$1.h"; }
metric() { # metric SERIES: its value on troop up's /metrics
	curl -s "http://127.0.0.1:$UM_PORT/metrics" | awk -v s="$1" '$1 == s { print $2 }'
}
authorizes() { grep -c '"authorize"\|event=authorize\|authorize job=' "$COORD_LOG"; }
wait_metric() { # wait_metric SERIES VALUE
	local i
	for i in $(seq 1 100); do
		[ "$(metric "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# ---- the first request authorizes; one ticket is fetched ahead -----------------
code=$(chat "$MAIN_URL" "$CHAIN_TMP/r1")
[ "$code" = 200 ] || chain_fail "first request: HTTP $code $(cat "$CHAIN_TMP/r1")"
wait_metric 'troop_up_prefetch_total{result="fetched"}' 1 ||
	chain_fail "no ticket fetched ahead: $(curl -s "http://127.0.0.1:$UM_PORT/metrics" | grep prefetch)"
held=$(metric troop_up_prefetch_held_credits)
ahead_job=$(grep -o 'authorize.*job=[^ ]*' "$COORD_LOG" | tail -1 | sed 's/.*job=\([^ ]*\).*/\1/')
[ "${held:-0}" -gt 0 ] && ok "one ticket fetched ahead (job $ahead_job), holding $held credits" ||
	chain_fail "held credits: '$held'"

# ---- it holds no slot: another client is served at once ------------------------
chain_up other "$COORD_URL" --prefetch-idle 0 --wait 0
code=$(chat "$UP_URL" "$CHAIN_TMP/other")
[ "$code" = 200 ] && ok "the node's one slot stayed free for another client" ||
	chain_fail "another client got HTTP $code while a ticket waited ahead: $(cat "$CHAIN_TMP/other")"

# ---- the next request uses it: no /authorize before the worker answers -----------
before=$(authorizes)
code=$(chat "$MAIN_URL" "$CHAIN_TMP/r2")
job2=$(job_of "$CHAIN_TMP/r2")
[ "$code" = 200 ] || chain_fail "second request: HTTP $code $(cat "$CHAIN_TMP/r2")"
[ "$(metric 'troop_up_prefetch_total{result="used"}')" = 1 ] ||
	chain_fail "the second request did not use the ticket fetched ahead"
[ -n "$ahead_job" ] && [ "$job2" = "$ahead_job" ] &&
	ok "the session's next request went straight to the worker with job $job2" ||
	chain_fail "the second request's job '$job2' is not the ticket fetched ahead '$ahead_job'"
# the /authorize after it is the next ticket ahead, not this request's
wait_metric 'troop_up_prefetch_total{result="fetched"}' 2 ||
	chain_fail "no new ticket fetched after the pooled one was used"
[ "$(( $(authorizes) - before ))" = 1 ] || chain_fail "authorizations during the second request: $(( $(authorizes) - before ))"

# ---- the ticket's node goes away: failover, the app gets its answer --------------
{ kill -9 "$WA_PID"; wait "$WA_PID"; } 2>/dev/null
chain_sim b --models "$MODEL"
# four slots: a slot comes back when the worker's receipt reaches the
# coordinator, a few milliseconds after the app got its answer, and the
# requests below follow each other at once (with one slot, the third got
# 503 under a sanitizer)
chain_worker b "ollama=http://127.0.0.1:$SIM_PORT" --donate always --no-verify --max-jobs 4
chain_wait_nodes "$MODEL" 1
code=$(chat "$MAIN_URL" "$CHAIN_TMP/r3")
[ "$code" = 200 ] && grep -q "failover" "$CHAIN_TMP/up-main.log" &&
	ok "a ticket ahead for a node that went away failed over; HTTP 200" ||
	chain_fail "after the ticket's node went away: HTTP $code $(cat "$CHAIN_TMP/r3")"

# ---- off: every request authorizes --------------------------------------------------
# (the main proxy's own ticket ahead, asked for when r3 took its ticket,
# has come first)
wait_metric 'troop_up_prefetch_total{result="fetched"}' 3 ||
	chain_fail "no ticket fetched ahead after the failover"
before=$(authorizes)
for i in 1 2 3; do
	code=$(chat "$UP_URL" "$CHAIN_TMP/off$i")
	[ "$code" = 200 ] || chain_fail "--prefetch-idle 0: request $i got HTTP $code $(head -c 300 "$CHAIN_TMP/off$i")"
done
# one authorization per try (a try may still go to the node that went away)
tries=$(grep ' job job=' "$CHAIN_TMP/up-other.log" | tail -3 | sed 's/.* tries=\([0-9]*\).*/\1/' |
	awk '{ s += $1 } END { print s }')
[ "$(( $(authorizes) - before ))" = "$tries" ] &&
	ok "--prefetch-idle 0: three requests, an authorization for each of their $tries tries" ||
	chain_fail "--prefetch-idle 0: $(( $(authorizes) - before )) authorizations for 3 requests of $tries tries"

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
