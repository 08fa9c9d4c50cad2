#!/usr/bin/env bash
# bench_seal.sh - what sealing (docs/PROTOCOL.md "Sealed jobs") costs, in
# one run, side by side: the same chain twice,
#
#   plain   app -> troop up -> troop worker --no-seal -> engine simulator
#   sealed  app -> troop up -> troop worker           -> engine simulator
#
# (two workers on two simulators, one model each, the requests of the two
# paths interleaved so that both see the same shared, noisy machine).
# Figures:
#   - time to first byte (p50, p99) of a streamed chat, /authorize
#     included, N requests per path one at a time on a keep-alive
#     connection; the difference is what sealing adds (target: < 0.1 ms
#     p50);
#   - single-stream throughput (events/s of an unpaced engine, TOKENS
#     tokens), median of ROUNDS rounds, sealed as a ratio to plain
#     (target: >= 0.95).
# Every hop runs one thread.
#
# Usage: bench/bench_seal.sh [build-dir]   (env: N=300 TOKENS=200000 ROUNDS=5)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
N=${N:-300}
TOKENS=${TOKENS:-200000}
ROUNDS=${ROUNDS:-5}
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target troop engine-sim -j2 >/dev/null

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
chain_init troop-bench-seal
TMP=$CHAIN_TMP
export TROOP_LOG_LEVEL=warn
SP=$(chain_free_port); SS=$(chain_free_port); CP=$(chain_free_port)
WP=$(chain_free_port); WS=$(chain_free_port); UP=$(chain_free_port)

chain_spawn "$TMP/sim-p.log" "" "$SIM" --listen 127.0.0.1:$SP --tokens-per-second 0 --models plain:1b
chain_spawn "$TMP/sim-s.log" "" "$SIM" --listen 127.0.0.1:$SS --tokens-per-second 0 --models sealed:1b
chain_spawn "$TMP/coord.log" "" "$TROOP" coordinator --listen 127.0.0.1:$CP --data-dir "$TMP/coord" \
	--allow-unverified --threads 1 --starter-credits 1000000000000 --reserve-seconds 3600
chain_wait_http "http://127.0.0.1:$CP/health" || exit 1
chain_wait_http "http://127.0.0.1:$SP/v1/models" || exit 1
chain_wait_http "http://127.0.0.1:$SS/v1/models" || exit 1
chain_spawn "$TMP/worker-p.log" "$TMP/worker-p" "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WP --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SP" \
	--max-jobs 64 --donate always --threads 1 --no-seal
chain_spawn "$TMP/worker-s.log" "$TMP/worker-s" "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WS --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SS" \
	--max-jobs 64 --donate always --threads 1
chain_spawn "$TMP/up.log" "$TMP/client" "$TROOP" up --listen 127.0.0.1:$UP \
	--coordinator "http://127.0.0.1:$CP" --threads 1
chain_wait_http "http://127.0.0.1:$UP/health" || exit 1
for _ in $(seq 1 300); do
	m=$(curl -s "http://127.0.0.1:$CP/v1/models")
	case $m in *plain:1b*sealed:1b*|*sealed:1b*plain:1b*) break ;; esac
	sleep 0.05
done

python3 - "$UP" "$N" "$TOKENS" "$ROUNDS" "$build/bench_seal.json" <<'PY'
import http.client, json, statistics, sys, time
port, n, tokens, rounds, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
conns = {m: http.client.HTTPConnection("127.0.0.1", port) for m in ("plain:1b", "sealed:1b")}

def stream(model, max_tokens):
    body = json.dumps({"model": model, "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "bench the seal"}]})
    c = conns[model]
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read()[:300])
    first = None
    events = 0
    last = b""
    while True:
        d = r.read1(65536)
        if not d:
            break
        if first is None:
            first = time.perf_counter()
        events += (last + d).count(b"\n\n")   # the blank line that ends an event
        last = d[-1:]
    t1 = time.perf_counter()
    return (first - t0) * 1000, events, t1 - t0

# warm up both paths
for m in conns:
    for _ in range(5):
        stream(m, 1)
ttfb = {m: [] for m in conns}
order = list(conns)
for i in range(n):
    for m in (order if i % 2 else order[::-1]):
        ttfb[m].append(stream(m, 1)[0])
tput = {m: [] for m in conns}
for i in range(rounds):
    for m in (order if i % 2 else order[::-1]):
        _, ev, secs = stream(m, tokens)
        tput[m].append(ev / secs)

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]

res = {}
for m, name in (("plain:1b", "plain"), ("sealed:1b", "sealed")):
    res[name] = {"ttfb_p50_ms": pct(ttfb[m], 0.5), "ttfb_p99_ms": pct(ttfb[m], 0.99),
                 "events_per_s": statistics.median(tput[m])}
add50 = res["sealed"]["ttfb_p50_ms"] - res["plain"]["ttfb_p50_ms"]
add99 = res["sealed"]["ttfb_p99_ms"] - res["plain"]["ttfb_p99_ms"]
ratio = res["sealed"]["events_per_s"] / res["plain"]["events_per_s"]
res.update({"added_ttfb_p50_ms": add50, "added_ttfb_p99_ms": add99, "throughput_ratio": ratio,
            "n": n, "tokens": tokens, "rounds": rounds})
json.dump(res, open(out, "w"), indent=1)
print("plain : ttfb p50 %.3f ms p99 %.3f ms, %.0f events/s" % (res["plain"]["ttfb_p50_ms"],
      res["plain"]["ttfb_p99_ms"], res["plain"]["events_per_s"]))
print("sealed: ttfb p50 %.3f ms p99 %.3f ms, %.0f events/s" % (res["sealed"]["ttfb_p50_ms"],
      res["sealed"]["ttfb_p99_ms"], res["sealed"]["events_per_s"]))
print("RESULT seal added ttfb p50 %.3f ms (target < 0.1), p99 %.3f ms" % (add50, add99))
print("RESULT seal single-stream throughput ratio %.3f (target >= 0.95)" % ratio)
PY
