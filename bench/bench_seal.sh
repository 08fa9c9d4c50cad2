#!/usr/bin/env bash
# bench_seal.sh - what sealing (docs/PROTOCOL.md "Sealed jobs") costs, in
# one run, side by side: the same chain twice,
#
#   plain   app -> troop up -> troop worker --no-seal -> engine simulator
#   sealed  app -> troop up -> troop worker           -> engine simulator
#
# (two troop up, two workers on two simulators, one model each, the
# requests of the two paths interleaved so that both see the same shared,
# noisy machine).
# Figures:
#   - time to first byte (p50, p99) of a streamed chat, /authorize
#     included, N requests per path one at a time on a keep-alive
#     connection; the difference is what sealing adds (target: < 0.1 ms
#     p50);
#   - single-stream throughput (events/s of an unpaced engine, TOKENS
#     tokens), median of ROUNDS rounds, sealed as a ratio to plain
#     (target: >= 0.95); and, less at the mercy of a loaded machine, the
#     CPU time troop up and the worker spent per 1000 events in those
#     rounds (all threads, /proc/PID/task/*/schedstat), plain against
#     sealed.
# Every hop runs one thread (troop up adds a thread that makes sealing
# keys ahead of use, up_seal.h).  The load average is printed: on a
# shared machine above ~2 the wall-clock figures swing by tens of percent.
#
# Usage: bench/bench_seal.sh [build-dir]   (env: N=1000 TOKENS=200000 ROUNDS=9)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
N=${N:-1000}
TOKENS=${TOKENS:-200000}
ROUNDS=${ROUNDS:-9}
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target troop engine-sim -j2 >/dev/null

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
chain_init troop-bench-seal
TMP=$CHAIN_TMP
export TROOP_LOG_LEVEL=${TROOP_LOG_LEVEL:-warn}
SP=$(chain_free_port); SS=$(chain_free_port); CP=$(chain_free_port)
WP=$(chain_free_port); WS=$(chain_free_port); UP=$(chain_free_port)

chain_spawn "$TMP/sim-p.log" "" "$SIM" --listen 127.0.0.1:$SP --tokens-per-second 0 --context 1048576 --models plain:1b
chain_spawn "$TMP/sim-s.log" "" "$SIM" --listen 127.0.0.1:$SS --tokens-per-second 0 --context 1048576 --models sealed:1b
chain_spawn "$TMP/coord.log" "" "$TROOP" coordinator --listen 127.0.0.1:$CP --data-dir "$TMP/coord" \
	--allow-unverified --threads 1 --starter-credits 1000000000000 --reserve-seconds 3600
chain_wait_http "http://127.0.0.1:$CP/health" || exit 1
chain_wait_http "http://127.0.0.1:$SP/v1/models" || exit 1
chain_wait_http "http://127.0.0.1:$SS/v1/models" || exit 1
chain_spawn "$TMP/worker-p.log" "$TMP/worker-p" "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WP --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SP" \
	--max-jobs 64 --donate always --threads 1 --no-seal
WPID_P=$CHAIN_PID
chain_spawn "$TMP/worker-s.log" "$TMP/worker-s" "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WS --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SS" \
	--max-jobs 64 --donate always --threads 1
WPID_S=$CHAIN_PID
# one troop up per path, so that each path's CPU time can be told apart
UP2=$(chain_free_port)
chain_spawn "$TMP/up.log" "$TMP/client" "$TROOP" up --listen 127.0.0.1:$UP \
	--coordinator "http://127.0.0.1:$CP" --threads 1
UPID_P=$CHAIN_PID
chain_spawn "$TMP/up-s.log" "$TMP/client-s" "$TROOP" up --listen 127.0.0.1:$UP2 \
	--coordinator "http://127.0.0.1:$CP" --threads 1
UPID_S=$CHAIN_PID
chain_wait_http "http://127.0.0.1:$UP/health" || exit 1
chain_wait_http "http://127.0.0.1:$UP2/health" || exit 1
for _ in $(seq 1 300); do
	m=$(curl -s "http://127.0.0.1:$CP/v1/models")
	case $m in *plain:1b*sealed:1b*|*sealed:1b*plain:1b*) break ;; esac
	sleep 0.05
done

python3 - "$UP" "$UP2" "$N" "$TOKENS" "$ROUNDS" "$build/bench_seal.json" \
	"$UPID_P" "$WPID_P" "$UPID_S" "$WPID_S" <<'PY'
import glob, http.client, json, os, statistics, sys, time
port_p, port_s, n, tokens, rounds = (int(x) for x in sys.argv[1:6])
out = sys.argv[6]
pids = {"plain:1b": (int(sys.argv[7]), int(sys.argv[8])),
        "sealed:1b": (int(sys.argv[9]), int(sys.argv[10]))}
conns = {"plain:1b": http.client.HTTPConnection("127.0.0.1", port_p),
         "sealed:1b": http.client.HTTPConnection("127.0.0.1", port_s)}

def cpu_ns(pid):
    """On-CPU time of every thread of pid so far (schedstat, ns)."""
    t = 0
    for f in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            t += int(open(f).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return t

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

load0 = os.getloadavg()
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
cpu = {m: [0, 0] for m in conns}     # troop up, worker: ns over the rounds
evs = {m: 0 for m in conns}
for i in range(rounds):
    for m in (order if i % 2 else order[::-1]):
        before = [cpu_ns(p) for p in pids[m]]
        _, ev, secs = stream(m, tokens)
        after = [cpu_ns(p) for p in pids[m]]
        for k in range(2):
            cpu[m][k] += after[k] - before[k]
        evs[m] += ev
        tput[m].append(ev / secs)
load1 = os.getloadavg()

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]

res = {}
for m, name in (("plain:1b", "plain"), ("sealed:1b", "sealed")):
    res[name] = {"ttfb_p50_ms": pct(ttfb[m], 0.5), "ttfb_p99_ms": pct(ttfb[m], 0.99),
                 "events_per_s": statistics.median(tput[m]),
                 "up_cpu_us_per_kevent": cpu[m][0] / evs[m], "worker_cpu_us_per_kevent": cpu[m][1] / evs[m]}
add50 = res["sealed"]["ttfb_p50_ms"] - res["plain"]["ttfb_p50_ms"]
add99 = res["sealed"]["ttfb_p99_ms"] - res["plain"]["ttfb_p99_ms"]
ratio = res["sealed"]["events_per_s"] / res["plain"]["events_per_s"]
cpu_ratio = ((res["plain"]["up_cpu_us_per_kevent"] + res["plain"]["worker_cpu_us_per_kevent"]) /
             (res["sealed"]["up_cpu_us_per_kevent"] + res["sealed"]["worker_cpu_us_per_kevent"]))
res.update({"added_ttfb_p50_ms": add50, "added_ttfb_p99_ms": add99, "throughput_ratio": ratio,
            "cpu_ratio": cpu_ratio, "load_before": load0, "load_after": load1,
            "n": n, "tokens": tokens, "rounds": rounds})
json.dump(res, open(out, "w"), indent=1)
for name in ("plain", "sealed"):
    r = res[name]
    print("%-6s: ttfb p50 %.3f ms p99 %.3f ms, %.0f events/s; CPU per 1000 events: "
          "troop up %.0f us, worker %.0f us" % (name, r["ttfb_p50_ms"], r["ttfb_p99_ms"],
          r["events_per_s"], r["up_cpu_us_per_kevent"], r["worker_cpu_us_per_kevent"]))
print("load average %.2f before, %.2f after (2 cores shared)" % (load0[0], load1[0]))
print("RESULT seal added ttfb p50 %.3f ms (target < 0.1), p99 %.3f ms" % (add50, add99))
print("RESULT seal single-stream throughput ratio %.3f (target >= 0.95)" % ratio)
print("RESULT seal CPU per event, plain / sealed (troop up + worker): %.3f" % cpu_ratio)
PY
