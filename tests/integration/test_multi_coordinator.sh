#!/usr/bin/env bash
# labels: pg
#
# test_multi_coordinator.sh - two coordinators on different ports sharing
# one PostgreSQL ledger and one Redis registry (docs/PRODUCTION.md), with a
# real troop on loopback:
#   - both serve the same /public-key (the ticket key lives in the ledger);
#   - a worker (engine-sim behind it) heartbeats to coordinator A only; a
#     client (`troop up`, then `troop chat`) authorizes on coordinator B and
#     the request completes through the worker; the worker's receipt goes
#     to A and the client's delivery report to B, and the two witnesses
#     settle the job B authorized across the shared ledger (A's log shows
#     the receipt, B's the report; B reports the charge);
#   - then tests/integration/test_multi_coord.c against both: receipts for
#     jobs authorized on one settle on the other in both directions, a
#     nonce used at one is a replay at the other, 100 concurrent
#     authorizations split across both from an account that affords 10
#     give exactly 10 (and 90 402s), a ledger that cannot read a node's row
#     answers 503 unavailable (not no_capacity), PostgreSQL restarted (503 in the JSON
#     error shape while it is down, nothing committed lost, service back at
#     once), Redis restarted (nodes gone until their next heartbeat; the
#     real worker back within its heartbeat interval);
#   - after each restart the client's requests complete again through the
#     worker, and both coordinators are still running and stop cleanly.
#
# Starts a private PostgreSQL and Redis (tests/pg/start-services.sh) on a
# fresh database and key prefix.  Fails (never skips) when the servers
# cannot be started or the programs were not built.
set -u
src=${TROOP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export TROOP_BUILD_DIR=${TROOP_BUILD_DIR:-$src/build}
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
command -v psql >/dev/null || { echo "FAIL: psql is not installed (postgresql-client)"; exit 1; }
ITEST=$TROOP_BUILD_DIR/tests/itest_test_multi_coord
[ -x "$ITEST" ] || { echo "FAIL: $ITEST is not built (cmocka is needed)"; exit 1; }
. "$src/tests/integration/troop_chain.sh"
chain_init troop-multi
ok() { echo "ok: $*"; }

chain_services
chain_at_exit '[ "$CHAIN_FAILS" -gt 0 ] && chain_services_logs'
DB=troop_multi_$$
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "CREATE DATABASE $DB" >/dev/null ||
	{ echo "FAIL: could not create database $DB"; exit 1; }
DB_URL=${DATABASE_URL%/*}/$DB
REG_URL="$REDIS_URL/0?prefix=multi$$:"
REDIS_URL_BASE=$REDIS_URL
# nothing reaches the servers except through the flags below
unset DATABASE_URL REDIS_URL TROOP_DATABASE_URL TROOP_REDIS_URL
echo "services: $DB_URL $REG_URL"

MODEL=llama3:8b
NODE_TTL=6          # heartbeat interval: NODE_TTL / 3 = 2 s
INTERVAL=$((NODE_TTL / 3))
PROMPT="two coordinators, one troop"
body() { printf '{"model":"%s","stream":false,"messages":[{"role":"user","content":"%s"}]}' \
	"$MODEL" "$PROMPT"; }

chain_coordinator --database-url "$DB_URL" --registry-url "$REG_URL" --node-ttl $NODE_TTL \
	--threads 2
COORD_A=$COORD_URL
PID_A=$COORD_PID
LOG_A=$COORD_LOG
chain_coordinator --database-url "$DB_URL" --registry-url "$REG_URL" --node-ttl $NODE_TTL \
	--threads 2
COORD_B=$COORD_URL
PID_B=$COORD_PID
LOG_B=$COORD_LOG
for log in "$LOG_A" "$LOG_B"; do
	grep -q "coordinator_started.*ledger=postgres registry=redis" "$log" ||
		chain_fail "$(basename "$log"): not on postgres+redis: $(grep coordinator_started "$log")"
done
echo "coordinator A: $COORD_A, coordinator B: $COORD_B"

PK_A=$(curl -sf "$COORD_A/public-key")
PK_B=$(curl -sf "$COORD_B/public-key")
if [ -n "$PK_A" ] && [ "$PK_A" = "$PK_B" ]; then
	ok "both coordinators serve the same public key $PK_A"
else
	chain_fail "public keys differ: A $PK_A, B $PK_B"
fi

# three more started at the same moment on another fresh database: the
# migrations run once and all of them sign with the one key the first created
DB2=troop_multi_together_$$
psql -q -v ON_ERROR_STOP=1 "${DB_URL%/*}/postgres" -c "CREATE DATABASE $DB2" >/dev/null ||
	chain_fail "could not create database $DB2"
TOGETHER=()
TOGETHER_LOGS=()
for k in 1 2 3; do
	CHAIN_VERIFY=1 chain_coordinator_bg --threads 1 --database-url "${DB_URL%/*}/$DB2" \
		--registry-url "$REDIS_URL_BASE/0?prefix=together$$:"
	TOGETHER+=("$COORD_PID")
	TOGETHER_LOGS+=("$COORD_LOG")
done
KIDS=
for k in 0 1 2; do
	chain_wait_port "${TOGETHER_LOGS[$k]}" coordinator_started "${TOGETHER[$k]}" \
		>/dev/null || chain_fail "coordinator $((k + 1)) of 3 started together did not start"
	KIDS="$KIDS $(sed -n 's/.*coordinator_started.* kid=\([^ ]*\).*/\1/p' "${TOGETHER_LOGS[$k]}")"
done
for p in "${TOGETHER[@]}"; do chain_stop "$p"; done
if [ "$(echo $KIDS | tr ' ' '\n' | sort -u | wc -l)" = 1 ] && [ "$(echo $KIDS | wc -w)" = 3 ]; then
	ok "three coordinators started together on a fresh database share one key ($KIDS )"
else
	chain_fail "coordinators started together signed with different keys:$KIDS"
fi

# ---- a request authorized on B, served by a worker of A, settled on A ------------------
chain_sim s1
SIM=$SIM_PORT
COORD_URL=$COORD_A
chain_worker w1 "vllm=http://127.0.0.1:$SIM" --donate always --max-jobs 16
WORKER=$(TROOP_HOME=$CHAIN_TMP/home-worker-w1 "$TROOP" id)
COORD_URL=$COORD_B            # everything the client does goes to B
chain_wait_nodes "$MODEL" 1   # B lists the worker that heartbeats to A
# no ticket fetched ahead: the balances below hold nothing in reserve
chain_up main "$COORD_B" --first-byte-timeout 5 --prefetch-idle 0

WANT=$(curl -s "http://127.0.0.1:$SIM/v1/chat/completions" -d "$(body)" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ -n "$WANT" ] || { chain_fail "the simulator gave no answer"; exit 1; }

# chat_via_up LABEL: one request through `troop up` (on B); sets JOB
chat_via_up() {
	local got
	JOB=
	got=$(curl -s -D "$CHAIN_TMP/h" "$UP_URL/v1/chat/completions" -H "Content-Type: application/json" -d "$(body)" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])' \
		2>/dev/null)
	JOB=$(sed -n 's/^[Xx]-[Tt]roop-[Jj]ob: \([^[:space:]]*\).*/\1/p' "$CHAIN_TMP/h")
	if [ "$got" = "$WANT" ] && [ -n "$JOB" ]; then
		ok "$1: troop up on B answered through the worker (job $JOB)"
	else
		chain_fail "$1: troop up answered '$got' (job '$JOB'): $(tail -5 "$CHAIN_TMP/up-main.log")"
	fi
}

# settled_on_a LABEL: the job JOB settles from the worker's receipt on A and
# the client's delivery report on B; B reports it
settled_on_a() {
	local i settled=
	for i in $(seq 1 100); do
		if chain_troop transactions --json --limit 50 | python3 -c '
import json, sys
rows = [t for t in json.load(sys.stdin)["transactions"] if t["job_id"] == sys.argv[1]]
sys.exit(0 if any(t["type"] == "settle" for t in rows) else 1)' "$JOB"; then
			settled=1
			break
		fi
		sleep 0.1
	done
	if [ -z "$settled" ]; then
		chain_fail "$1: job $JOB not settled within 10 s"
	elif grep -q "path=/jobs/$JOB/receipt status=200" "$LOG_A" &&
		! grep -q "path=/jobs/$JOB/receipt" "$LOG_B" &&
		grep -q "path=/jobs/$JOB/report status=200" "$LOG_B"; then
		ok "$1: the worker's receipt (on A) and the client's report (on B) settled job $JOB; B reports the settlement"
	else
		chain_fail "$1: job $JOB settled, but not from A's receipt and B's report"
	fi
}

chat_via_up "first request"
settled_on_a "first request"
GOT=$(chain_troop chat -m "$MODEL" "$PROMPT" 2>"$CHAIN_TMP/chat.err")
[ "$GOT" = "$WANT" ] && ok "troop chat against B streams through A's worker" ||
	chain_fail "troop chat printed '$GOT' ($(cat "$CHAIN_TMP/chat.err"))"
# the chat's receipt too: nothing stays reserved, the charges are gone
for _ in $(seq 1 100); do
	BAL=$(chain_troop balance --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))')
	python3 -c 'import json,sys; b=json.loads(sys.argv[1]); sys.exit(0 if b["reserved_seconds"] == 0 else 1)' \
		"$BAL" && break
	sleep 0.1
done
python3 -c 'import json,sys; b=json.loads(sys.argv[1]); assert b["reserved_seconds"] == 0 and b["balance_seconds"] < 3600, b' \
	"$BAL" && ok "the client's balance on B: both jobs charged, nothing reserved ($BAL)" ||
	chain_fail "client balance after two jobs: $BAL"

# ---- the two coordinators, driven directly -------------------------------------------------
export TROOP_TEST_COORD_A=$COORD_A TROOP_TEST_COORD_B=$COORD_B
export TROOP_TEST_DATABASE_URL=$DB_URL
export TROOP_TEST_PG_STOP="'$src/tests/pg/stop-services.sh' '$SVC_DIR' pg"
export TROOP_TEST_PG_START="'$src/tests/pg/start-services.sh' --only pg '$SVC_DIR' >/dev/null"
export TROOP_TEST_REDIS_STOP="'$src/tests/pg/stop-services.sh' '$SVC_DIR' redis"
export TROOP_TEST_REDIS_START="'$src/tests/pg/start-services.sh' --only redis '$SVC_DIR' >/dev/null"
export TROOP_TEST_WATCH_NODE=$WORKER
export TROOP_TEST_WATCH_WITHIN_S=$((INTERVAL + 2))

alive() {
	local p
	for p in "$PID_A" "$PID_B"; do
		kill -0 "$p" 2>/dev/null || { chain_fail "$1: coordinator pid $p is gone"; return 1; }
	done
	ok "$1: both coordinators still running"
}

"$ITEST" same-key cross-settle race && ok "same key, cross settlement, 100-way race" ||
	chain_fail "test_multi_coord same-key cross-settle race"

# a third coordinator that gives up on a locked row after 200 ms
chain_coordinator --database-url "$DB_URL?options=-c%20lock_timeout%3D200" \
	--registry-url "$REG_URL" --node-ttl $NODE_TTL --threads 2
export TROOP_TEST_COORD_C=$COORD_URL
COORD_URL=$COORD_B
"$ITEST" node-row-unreadable && ok "nodes table locked: authorize answers; accounts locked: 503 unavailable" ||
	chain_fail "test_multi_coord node-row-unreadable"

"$ITEST" pg-restart && ok "PostgreSQL restart: 503 while down, nothing lost" ||
	chain_fail "test_multi_coord pg-restart"
alive "after the PostgreSQL restart"
chain_wait_nodes "$MODEL" 1
chat_via_up "after the PostgreSQL restart"
settled_on_a "after the PostgreSQL restart"

"$ITEST" redis-restart && ok "Redis restart: nodes re-register on their next heartbeat" ||
	chain_fail "test_multi_coord redis-restart"
alive "after the Redis restart"
chain_wait_nodes "$MODEL" 1
chat_via_up "after the Redis restart"
settled_on_a "after the Redis restart"

# the worker rode out both outages (its heartbeats are refused only when
# one falls inside an outage): still running, and every refused heartbeat
# was followed by an accepted one
kill -0 "$WORKER_PID" 2>/dev/null || chain_fail "the worker exited"
refused=$(grep -c " failures=" "$CHAIN_TMP/worker-w1.log")
if [ "$refused" -eq 0 ]; then
	ok "the worker's heartbeats all fell between the outages"
elif [ "$(grep " failures=\|after_failures" "$CHAIN_TMP/worker-w1.log" | tail -n1 |
	grep -c after_failures)" = 1 ]; then
	ok "the worker's heartbeats recovered after $refused refused one(s)"
else
	chain_fail "the worker's last heartbeat was refused: $(grep " failures=" "$CHAIN_TMP/worker-w1.log" | tail -n1)"
fi

# neither coordinator logged a crash-like error; both stop cleanly
chain_stop_clean "$UP_PID" "$CHAIN_TMP/up-main.log" "troop up"
chain_stop_clean "$WORKER_PID" "$CHAIN_TMP/worker-w1.log" "troop worker"
chain_stop_clean "$PID_A" "$LOG_A" "coordinator A"
chain_stop_clean "$PID_B" "$LOG_B" "coordinator B"

if [ "$CHAIN_FAILS" -gt 0 ]; then
	echo "FAIL: $CHAIN_FAILS check(s) failed"
	exit 1
fi
echo "all multi-coordinator checks passed"
