#!/usr/bin/env bash
# labels: slow
# test_soak.sh - `make soak`: a troop under mixed traffic for
# TROOP_SOAK_SECONDS (default 600): one coordinator, three engine
# simulators with three workers, two `troop up` clients with their own
# accounts, eight concurrent callers sending streamed and plain chat,
# completions and embeddings.  Halfway through, one worker is restarted
# (SIGTERM, drain, start again with the same identity).  Then:
#   - no receipt is lost: every job an engine served is settled;
#   - no reservation stays open, and none was refunded unpaid after
#     reaching an engine;
#   - the ledger invariant holds: balances + trial credits + open
#     reservations + pending earnings == grants - forfeits;
#   - two witnesses, all honest: every settled job has its client's
#     delivery report, none is disputed (either way), and every worker is
#     paid exactly the duration it claimed;
#   - every process's memory stays flat (RSS at the end within 25% or
#     6 MiB of its RSS a quarter of the way in).
set -u
command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 is not installed"; exit 1; }
. "$(dirname "$0")/troop_chain.sh"
chain_init
DUR=${TROOP_SOAK_SECONDS:-600}
MODEL=llama3:8b

chain_coordinator --starter-credits 100000000 --node-ttl 10
DB=$CHAIN_TMP/coordinator1/ledger.db
SIMS=()
for w in a b c; do
	chain_sim $w --tokens-per-second 200 --ttft-ms 20
	SIMS+=($SIM_PORT)
	chain_worker $w "ollama=http://127.0.0.1:$SIM_PORT" --donate always --max-jobs 6
	eval "WPID_$w=$WORKER_PID; WPORT_$w=$WORKER_PORT"
done
chain_wait_nodes "$MODEL" 3
CLIENT_HOME=$CHAIN_TMP/home-c1 chain_up c1 "$COORD_URL"
UP1=$UP_URL
mkdir -p "$CHAIN_TMP/home-c2"
CLIENT_HOME=$CHAIN_TMP/home-c2 chain_up c2 "$COORD_URL"
UP2=$UP_URL

rss() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
procs() { # name=pid for every process that lives through the run
	for p in "${CHAIN_PIDS[@]}"; do
		[ -r "/proc/$p/cmdline" ] || continue   # the restarted worker's old pid
		n=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
			awk '{n = $1; sub(".*/", "", n); if (n == "troop") n = $2; print n}')
		[ -n "$n" ] && echo "$n-$p=$p"
	done
}

cat >"$CHAIN_TMP/load.py" <<'PY'
# load.py SECONDS URL... : 8 callers, mixed OpenAI requests, round robin
# over the given troop up URLs; prints "ok N fail M" and the first errors.
import json, sys, threading, time, urllib.request
dur, urls = float(sys.argv[1]), sys.argv[2:]
model = "llama3:8b"
stop = time.monotonic() + dur
lock = threading.Lock()
stats = {"ok": 0, "fail": 0, "errors": []}
def req(url, path, body, stream):
    r = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        data = resp.read().decode()
    if stream:
        events = [l[6:] for l in data.splitlines() if l.startswith("data: ")]
        if not events or events[-1] != "[DONE]": raise Exception("stream not finished")
        for e in events[:-1]:
            if "error" in json.loads(e): raise Exception("error event " + e)
    else:
        j = json.loads(data)
        if "error" in j: raise Exception(data)
def caller(i):
    n = 0
    while time.monotonic() < stop:
        url = urls[(i + n) % len(urls)]
        kind = (i + n) % 4
        n += 1
        msgs = [{"role": "user", "content": "soak %d %d" % (i, n)}]
        try:
            if kind == 0: req(url, "/v1/chat/completions", {"model": model, "stream": True, "max_tokens": 20, "messages": msgs}, True)
            elif kind == 1: req(url, "/v1/chat/completions", {"model": model, "max_tokens": 8, "messages": msgs}, False)
            elif kind == 2: req(url, "/v1/completions", {"model": model, "prompt": "soak", "max_tokens": 8}, False)
            else: req(url, "/v1/embeddings", {"model": model, "input": "soak %d" % n}, False)
            with lock: stats["ok"] += 1
        except Exception as e:
            with lock:
                stats["fail"] += 1
                if len(stats["errors"]) < 5: stats["errors"].append(str(e)[:300])
ts = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("ok", stats["ok"], "fail", stats["fail"])
for e in stats["errors"]: print("error:", e)
PY

python3 "$CHAIN_TMP/load.py" "$DUR" "$UP1" "$UP2" >"$CHAIN_TMP/load.out" 2>&1 &
LOAD=$!

# memory baseline a quarter of the way in
sleep $((DUR / 4))
declare -A BASE
while IFS='=' read -r name pid; do BASE[$name]=$(rss "$pid"); done < <(procs)

# restart worker b halfway through
sleep $((DUR / 4))
kill -TERM "$WPID_b"; wait "$WPID_b" 2>/dev/null
echo "ok: worker b stopped (drained) at t=$((DUR / 2)) s"
# the same identity and name, a log of its own
WORKER_HOME=$CHAIN_TMP/home-worker-b chain_worker b2 "ollama=http://127.0.0.1:${SIMS[1]}" \
	--name b --donate always --max-jobs 6

wait $LOAD
cat "$CHAIN_TMP/load.out"
read -r _ OK _ FAILED < <(head -1 "$CHAIN_TMP/load.out")
[ "${OK:-0}" -gt 100 ] || chain_fail "too few successful requests: ${OK:-0}"
# a request in flight to the worker being restarted may fail over; none may fail
[ "${FAILED:-1}" -eq 0 ] || chain_fail "$FAILED requests failed"

# memory: compare with the baseline
while IFS='=' read -r name pid; do
	b=${BASE[$name]:-}; [ -n "$b" ] && [ "$b" -gt 0 ] || continue
	now=$(rss "$pid")
	lim=$(( b + (b / 4 > 6144 ? b / 4 : 6144) ))
	echo "rss $name: ${b} kB -> ${now} kB (limit $lim kB)"
	[ "$now" -le "$lim" ] || chain_fail "$name memory grew from $b kB to $now kB"
done < <(procs)

# every receipt arrives: wait until no reservation is open
for i in $(seq 1 300); do
	open=$(sqlite3 "$DB" "SELECT count(*) FROM reservations WHERE status='open'")
	[ "$open" = 0 ] && break
	sleep 0.2
done
[ "$open" = 0 ] || chain_fail "$open reservations still open after the run"
served=0
for p in "${SIMS[@]}"; do
	s=$(curl -s "http://127.0.0.1:$p/sim/stats" | python3 -c \
		'import json,sys; j=json.load(sys.stdin); print(j["chat_requests"]+j["completion_requests"]+j["embedding_requests"])')
	served=$((served + s))
done
settled=$(sqlite3 "$DB" "SELECT count(*) FROM reservations WHERE status='settled'")
released=$(sqlite3 "$DB" "SELECT count(*) FROM reservations WHERE status='released'")
echo "engines served $served jobs; settled $settled; released unused $released"
[ "$settled" = "$served" ] || chain_fail "receipts lost: engines served $served jobs but $settled settled"
inv=$(sqlite3 "$DB" "SELECT (SELECT coalesce(sum(balance),0) + coalesce(sum(trial),0)
	FROM accounts)
	+ (SELECT coalesce(sum(amount),0) FROM reservations WHERE status='open')
	+ (SELECT coalesce(sum(pending),0) FROM nodes)
	- (SELECT coalesce(sum(credits),0) FROM transactions WHERE type IN ('grant','admin'))
	+ (SELECT coalesce(sum(credits),0) FROM transactions WHERE type = 'forfeit')")
[ "$inv" = 0 ] || chain_fail "ledger invariant broken by $inv credits"
echo "ok: ledger invariant holds"
# troop up reports every job; honest workers and clients never disagree
read -r reported disputed short < <(sqlite3 -separator ' ' "$DB" "SELECT
	sum(report_ms >= 0), sum(disputed + client_disputed),
	sum(claim_ms >= 0 AND duration_ms != claim_ms)
	FROM reservations WHERE status='settled'")
echo "delivery reports: $reported of $settled settled jobs; disputed $disputed;" \
	"paid other than claimed $short"
[ "${reported:-0}" = "$settled" ] || chain_fail "only ${reported:-0} of $settled settled jobs had a delivery report"
[ "${disputed:-1}" = 0 ] || chain_fail "$disputed honest jobs were disputed"
[ "${short:-1}" = 0 ] || chain_fail "$short honest workers were paid other than their claim"
# what the workers were paid: the same charges as before trial credits;
# paid from the clients' starter (trial) credits, so pending
echo "soak totals: $(sqlite3 "$DB" "SELECT 'charged ' || coalesce(sum(charged),0) ||
	' over ' || count(*) || ' jobs, ' || coalesce(sum(duration_ms),0) || ' ms'
	FROM reservations WHERE status='settled'"), pending $(sqlite3 "$DB" \
	"SELECT coalesce(sum(pending),0) FROM nodes")"
[ "$CHAIN_FAILS" -eq 0 ] || exit 1
echo "soak: all checks passed ($OK requests in $DUR s)"
