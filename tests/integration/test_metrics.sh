#!/usr/bin/env bash
# test_metrics.sh - the metrics of all three roles (issue 19, section 1).
# A coordinator, a worker with --metrics-listen and `troop up` with
# --metrics-listen serve a few chats; then:
#   - each /metrics page parses strictly as the exposition format and
#     follows its conventions (prom_check.py lint; promtool check metrics
#     too when installed);
#   - the numbers moved: jobs, tokens, credits, histograms;
#   - the worker's and troop up's metrics listen on loopback only: a
#     non-loopback --metrics-listen is refused at start;
#   - every query of deploy/grafana/troop-dashboard.json names a metric the
#     roles export (prom_check.py dashboard), and, when Debian's prometheus
#     is installed, a real Prometheus scrapes the three roles with
#     deploy/grafana/prometheus.yml's jobs and answers every query.
set -u
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init troop-metrics
SRC=$CHAIN_SRC

MODEL=llama3:8b
chain_coordinator
chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always --metrics-listen 127.0.0.1:0
WM_PORT=$(chain_port_from_log "$CHAIN_TMP/worker-w1.log" metrics_started "$WORKER_PID") || exit 1
chain_wait_nodes "$MODEL" 1
# no ticket fetched ahead: the counts below are one authorization per request
chain_up main "$COORD_URL" --metrics-listen 127.0.0.1:0 --prefetch-idle 0
UM_PORT=$(chain_port_from_log "$CHAIN_TMP/up-main.log" metrics_started "$UP_PID") || exit 1

for i in 1 2 3; do
	curl -s -o /dev/null -w "%{http_code}\n" "$UP_URL/v1/chat/completions" \
		-H 'Content-Type: application/json' \
		-d "{\"model\":\"$MODEL\",\"stream\":$([ $i = 2 ] && echo true || echo false),\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"hi $i\"}]}"
done >"$CHAIN_TMP/codes"
grep -qv '^200$' "$CHAIN_TMP/codes" && chain_fail "a chat failed: $(tr '\n' ' ' <"$CHAIN_TMP/codes")"
# a model nobody serves: a 404 for troop up's counters
curl -s -o /dev/null "$UP_URL/v1/chat/completions" -H 'Content-Type: application/json' \
	-d '{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}'
# receipts settle in the background
for i in $(seq 1 100); do
	curl -s "$COORD_URL/metrics" | grep -q '^troop_receipts_total 3$' && break
	sleep 0.1
done

curl -s "$COORD_URL/metrics" >"$CHAIN_TMP/coordinator.prom"
curl -s "127.0.0.1:$WM_PORT/metrics" >"$CHAIN_TMP/worker.prom"
curl -s "127.0.0.1:$UM_PORT/metrics" >"$CHAIN_TMP/up.prom"
PAGES=("$CHAIN_TMP/coordinator.prom" "$CHAIN_TMP/worker.prom" "$CHAIN_TMP/up.prom")

python3 "$HERE/prom_check.py" lint "${PAGES[@]}" || chain_fail "a /metrics page breaks the format"
if command -v promtool >/dev/null; then
	for p in "${PAGES[@]}"; do
		out=$(promtool check metrics <"$p" 2>&1) || chain_fail "promtool on $p: $out"
		[ -z "$out" ] || chain_fail "promtool lint on $(basename "$p"): $out"
	done
	echo "promtool check metrics: clean"
fi

# the numbers moved
val() { sed -n "s/^$2 //p" "$1" | head -n1; }
check() {  # check FILE SERIES OP WANT
	local v
	v=$(val "$1" "$2")
	python3 -c "import sys; v=float('${v:-nan}'); sys.exit(0 if v $3 $4 else 1)" ||
		chain_fail "$(basename "$1"): $2 is '${v}', want $3 $4"
}
C=$CHAIN_TMP/coordinator.prom W=$CHAIN_TMP/worker.prom U=$CHAIN_TMP/up.prom
check "$C" 'troop_receipts_total' == 3
check "$C" 'troop_tokens_total' '>' 0
check "$C" 'troop_credits_charged_total' '>' 0
check "$C" 'troop_live_nodes' == 1
check "$C" 'troop_nodes{status="idle"}' == 1
check "$C" 'troop_authorizations_total{result="model_not_found"}' == 1
check "$W" 'troop_worker_jobs_total{outcome="ok"}' == 3
check "$W" 'troop_worker_tokens_total' '>' 0
check "$W" 'troop_worker_first_token_seconds_count' == 3
check "$W" 'troop_worker_tokens_per_second_count' '>=' 1
check "$W" 'troop_worker_credits_earned_total' '>' 0
check "$W" 'troop_worker_active_jobs' == 0
check "$W" 'troop_worker_max_jobs' == 4
check "$W" 'troop_worker_donating' == 1
check "$U" 'troop_up_requests_total{class="2xx"}' == 3
check "$U" 'troop_up_requests_total{class="4xx"}' == 1
check "$U" 'troop_up_authorize_seconds_count' == 4
check "$U" 'troop_up_worker_first_byte_seconds_count' == 3
check "$U" 'troop_up_tickets_total' == 3
check "$U" 'troop_up_credits_reserved_total' '>' 0
check "$U" 'troop_up_failovers_total' == 0

# private by default: no metrics on the proxy ports, loopback only
code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$WORKER_PORT/metrics")
[ "$code" = 404 ] || chain_fail "the worker's public port answers /metrics ($code)"
code=$(curl -s -o /dev/null -w "%{http_code}" "$UP_URL/metrics")
[ "$code" = 404 ] || chain_fail "troop up's port answers /metrics ($code)"
out=$(TROOP_HOME=$CHAIN_TMP/home-x timeout 10 "$TROOP" up --listen 127.0.0.1:0 \
	--coordinator "$COORD_URL" --metrics-listen 0.0.0.0:0 2>&1)
rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q "not a loopback address" ||
	chain_fail "troop up took --metrics-listen 0.0.0.0:0 (rc $rc): $out"
out=$(TROOP_HOME=$CHAIN_TMP/home-y timeout 10 "$TROOP" worker --coordinator "$COORD_URL" \
	--listen 127.0.0.1:0 --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SIM_PORT" \
	--no-verify --metrics-listen 0.0.0.0:0 2>&1)
rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q "not a loopback address" ||
	chain_fail "the worker took --metrics-listen 0.0.0.0:0 (rc $rc): $out"

# ... unless the operator says so
chain_up remote "$COORD_URL" --metrics-listen 0.0.0.0:0 --metrics-listen-allow-remote
RM_PORT=$(chain_port_from_log "$CHAIN_TMP/up-remote.log" metrics_started "$UP_PID") ||
	chain_fail "troop up --metrics-listen-allow-remote did not serve metrics"
curl -s "127.0.0.1:$RM_PORT/metrics" | grep -q '^troop_up_requests_total{class="2xx"} 0$' ||
	chain_fail "the remote-allowed metrics listener does not answer"

# the dashboard's queries name exported metrics
DASH=$SRC/deploy/grafana/troop-dashboard.json
python3 "$HERE/prom_check.py" dashboard "$DASH" "${PAGES[@]}" ||
	chain_fail "the dashboard names metrics no role exports"

# a real Prometheus, when installed: scrape the three roles, run every query
if command -v prometheus >/dev/null; then
	PP=$(chain_free_port)
	python3 - "$SRC/deploy/grafana/prometheus.yml" "$CHAIN_TMP/prometheus.yml" \
		"127.0.0.1:$COORD_PORT" "127.0.0.1:$WM_PORT" "127.0.0.1:$UM_PORT" <<'PY'
import sys
src, dst, coord, worker, up = sys.argv[1:]
t = open(src).read()
t = t.replace("127.0.0.1:8420", coord).replace("127.0.0.1:9421", worker).replace("127.0.0.1:9001", up)
t = t.replace("scrape_interval: 15s", "scrape_interval: 1s")
open(dst, "w").write(t)
PY
	chain_spawn "$CHAIN_TMP/prometheus.log" "" prometheus --config.file="$CHAIN_TMP/prometheus.yml" \
		--storage.tsdb.path="$CHAIN_TMP/tsdb" --web.listen-address="127.0.0.1:$PP"
	python3 - "http://127.0.0.1:$PP" "$DASH" <<'PY' || chain_fail "Prometheus did not answer the dashboard's queries"
import json, re, sys, time, urllib.parse, urllib.request
base, dash = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.load(r)
deadline = time.time() + 60
while True:
    try:
        t = get("/api/v1/targets")["data"]["activeTargets"]
        if len(t) == 3 and all(x["health"] == "up" for x in t):
            break
    except Exception:
        pass
    if time.time() > deadline:
        print("FAIL: the targets did not come up"); sys.exit(1)
    time.sleep(0.5)
time.sleep(3)  # a few scrapes, so that rate() has two points
print("prometheus: 3 targets up:", ", ".join(x["labels"]["job"] for x in t))
exprs, names = [], set()
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("expr"), str): exprs.append(o["expr"])
        for v in o.values(): walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(json.load(open(dash)))
bad = 0
for e in exprs:
    names.update(re.findall(r"\btroop_[a-zA-Z0-9_:]*", e))
    r = get("/api/v1/query?query=" + urllib.parse.quote(e))
    if r.get("status") != "success":
        print("FAIL: query %r: %s" % (e, r)); bad += 1
for n in sorted(names):
    r = get("/api/v1/query?query=" + urllib.parse.quote(n))
    if not r["data"]["result"]:
        print("FAIL: Prometheus has no series for %s" % n); bad += 1
print("prometheus: %d queries ran, %d metrics have series" % (len(exprs), len(names) - bad))
sys.exit(1 if bad else 0)
PY
else
	echo "prometheus is not installed: the dashboard was checked by the exposition parser only"
fi

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
