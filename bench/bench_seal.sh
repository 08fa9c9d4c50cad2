#!/usr/bin/env bash
# bench_seal.sh - what sealing (docs/PROTOCOL.md "Sealed jobs") costs, in
# one run, side by side: the same chain twice per engine,
#
#   plain   app -> troop up -> troop worker --no-seal -> engine
#   sealed  app -> troop up -> troop worker           -> engine
#
# over two engines: the engine simulator, unpaced (what the troop itself
# costs per event, the engine costing next to nothing), and llama.cpp's
# llama-server with the tiny model of the engine tests (what users see: a
# real engine's pace, tokenizer and framing).  Every path has its own
# troop up, worker and engine (one model name each), so that each path's
# CPU time can be told apart; the requests of all paths are interleaved
# (the order rotates every round) so that they see the same shared, noisy
# machine.  With BASE=<another build dir> the same pair of paths also runs
# on that build's troop (e.g. the tree before a change), in the same run.
# Figures, per engine:
#   - time to first byte (p50, p99) of a streamed chat with a ticket
#     fetched ahead (PREFETCH=0: /authorize included), N requests per path
#     one at a time on a keep-alive connection; what sealing adds is the median of the differences
#     between the paths' requests of the same round (target: < 0.1 ms);
#   - single-stream throughput (events/s, TOKENS tokens a stream), ROUNDS
#     rounds; sealed against plain as the median of the rounds' ratios
#     (each round runs both paths back to back) (target: >= 0.95); and,
#     less at the mercy of a loaded machine, the CPU time troop up and the
#     worker spent per 1000 events (all threads, /proc/PID/task/*/schedstat),
#     plain against sealed.
# Every hop runs one thread (troop up adds a thread that makes sealing
# keys ahead of use, up_seal.h).  The load average is printed: on a
# shared machine above ~2 the wall-clock figures swing by tens of percent.
# The engine simulator sets TCP_NODELAY (else a stream's last write can
# wait 40 ms for a delayed ACK).
#
# Usage: bench/bench_seal.sh [build-dir]
# env: N=1000 TOKENS=200000 ROUNDS=15          the simulator
#      LLAMA_N=100 LLAMA_TOKENS=2000 LLAMA_ROUNDS=9   llama-server
#      ENGINE=both|sim|llama (both: llama only where llama-server and
#        the tiny model are cached, scripts/build-llama-server.sh; or
#        LLAMA_SERVER=<binary>, the model beside its bin/)
#      BASE=<build dir>  also the paths on that build's troop
#      NODES=1           workers per path (same engine): troop up's requests
#        go to several nodes in turn, as with a real fleet
#      PREFETCH=SECONDS  troop up --prefetch-idle (default 30): each request
#        after a path's first uses a ticket fetched ahead, so that the
#        coordinator's /authorize (a durable commit: milliseconds that vary
#        from one request to the next, and that sealing does not change)
#        is off the first-byte path; PREFETCH=0 puts it back on the path
#      PERF=<dir>        perf record -g of troop up and the worker of both
#        paths (this build) during the simulator's throughput rounds, or
#        with PERF_PHASE=ttfb during its first-byte requests (PERF_FREQ
#        samples a second, 999)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
N=${N:-1000}
TOKENS=${TOKENS:-200000}
ROUNDS=${ROUNDS:-15}
LLAMA_N=${LLAMA_N:-100}
LLAMA_TOKENS=${LLAMA_TOKENS:-2000}
LLAMA_ROUNDS=${LLAMA_ROUNDS:-9}
ENGINE=${ENGINE:-both}
NODES=${NODES:-1}
BASE=${BASE:-}
PERF=${PERF:-}
PREFETCH=${PREFETCH:-30}
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target troop engine-sim -j2 >/dev/null
if [ -n "$BASE" ]; then
	case $BASE in /*) ;; *) BASE=$root/$BASE ;; esac
	[ -x "$BASE/troop" ] || { echo "BASE=$BASE has no troop binary" >&2; exit 1; }
fi

MODEL_FILE=
if [ "$ENGINE" != sim ]; then
	# the cached binary only (building it takes about 20 minutes): the one
	# scripts/build-llama-server.sh made last, or $LLAMA_SERVER
	cache=${TROOP_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monkey-troop}
	LLAMA_SERVER=${LLAMA_SERVER:-$(ls -t "$cache"/llama.cpp-*/bin/llama-server 2>/dev/null |
		head -1)}
	MODEL_FILE=$(dirname "$(dirname "${LLAMA_SERVER:-/x/y}")")/tiny-llama.gguf
	if [ ! -x "${LLAMA_SERVER:-}" ] || [ ! -s "$MODEL_FILE" ]; then
		echo "llama-server or its tiny model is not cached here (run the engine" \
		    "tests once): the simulator only"
		LLAMA_SERVER=
		[ "$ENGINE" != llama ] || exit 1
	fi
else
	LLAMA_SERVER=
fi

export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
chain_init troop-bench-seal
TMP=$CHAIN_TMP
export TROOP_LOG_LEVEL=${TROOP_LOG_LEVEL:-warn}
CP=$(chain_free_port)
chain_spawn "$TMP/coord.log" "" "$TROOP" coordinator --listen 127.0.0.1:$CP --data-dir "$TMP/coord" \
	--allow-unverified --threads 1 --starter-credits 1000000000000 --reserve-seconds 3600
chain_wait_http "http://127.0.0.1:$CP/health" || exit 1

# path ENGINE BUILD-LABEL TROOP-BIN plain|sealed: an engine, NODES workers and a
# troop up serving model "<engine>-<build>-<mode>"; appended to $PATHS_JSON
PATHS_JSON=
MODELS=()
path() {
	local eng=$1 lbl=$2 bin=$3 mode=$4 name model ep wp up noseal= kind
	name=$eng-$lbl-$mode
	model=$name
	ep=$(chain_free_port); up=$(chain_free_port)
	if [ "$eng" = sim ]; then
		chain_spawn "$TMP/sim-$name.log" "" "$SIM" --listen 127.0.0.1:$ep \
			--tokens-per-second 0 --context 1048576 --models "$name:1b"
		model=$name:1b
		chain_wait_http "http://127.0.0.1:$ep/v1/models" || exit 1
		kind=vllm
	else
		chain_spawn "$TMP/llama-$name.log" "" "$LLAMA_SERVER" -m "$MODEL_FILE" \
			--host 127.0.0.1 --port "$ep" -t 1 -c 4096 -np 1 --alias "$name"
		for _ in $(seq 1 300); do
			[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ep/health")" = 200 ] &&
				break
			sleep 0.1
		done
		kind=llamacpp
	fi
	[ "$mode" = sealed ] || noseal=--no-seal
	local wpids= k
	for k in $(seq 1 "$NODES"); do
		wp=$(chain_free_port)
		chain_spawn "$TMP/worker-$name-$k.log" "$TMP/worker-$name-$k" "$bin" worker \
			--coordinator "http://127.0.0.1:$CP" --listen 127.0.0.1:$wp --advertise 127.0.0.1 \
			--engine "$kind=http://127.0.0.1:$ep" --max-jobs 64 --donate always --threads 1 \
			$noseal
		wpids+=${wpids:+,}$CHAIN_PID
	done
	chain_spawn "$TMP/up-$name.log" "$TMP/client-$name" "$bin" up --listen 127.0.0.1:$up \
		--coordinator "http://127.0.0.1:$CP" --threads 1 --prefetch-idle "$PREFETCH"
	local upid=$CHAIN_PID
	chain_wait_http "http://127.0.0.1:$up/health" || exit 1
	PATHS_JSON+="{\"name\":\"$model\",\"engine\":\"$eng\",\"build\":\"$lbl\",\"mode\":\"$mode\","
	PATHS_JSON+="\"port\":$up,\"up_pid\":$upid,\"worker_pids\":[$wpids]},"
	MODELS+=("$model")
}

ENGINES=()
[ "$ENGINE" = llama ] || ENGINES+=(sim)
[ -z "$LLAMA_SERVER" ] || ENGINES+=(llama)
for eng in "${ENGINES[@]}"; do
	for mode in plain sealed; do
		path "$eng" new "$TROOP" "$mode"
		[ -z "$BASE" ] || path "$eng" base "$BASE/troop" "$mode"
	done
done
for _ in $(seq 1 600); do
	m=$(curl -s "http://127.0.0.1:$CP/v1/models")
	all=1
	for n in "${MODELS[@]}"; do case $m in *"\"$n\""*) ;; *) all=0 ;; esac; done
	[ $all = 1 ] && break
	sleep 0.05
done
[ $all = 1 ] || { echo "FAIL: not every model was advertised: $m" >&2; exit 1; }

PERF_PIDS=()
perf_start() {
	[ -n "$PERF" ] || return 0
	mkdir -p "$PERF"
	python3 - "${PATHS_JSON%,}" <<'PY' | while read -r what pid; do
import json, sys
for p in json.loads("[" + sys.argv[1] + "]"):
    if p["engine"] == "sim" and p["build"] == "new":
        print(p["mode"] + "-up", p["up_pid"]); print(p["mode"] + "-worker", p["worker_pids"][0])
PY
		perf record -g -F "${PERF_FREQ:-999}" -p "$pid" -o "$PERF/$what.data" >"$PERF/$what.log" 2>&1 &
		echo $! >>"$TMP/perf.pids"
	done
}
perf_stop() {
	[ -f "$TMP/perf.pids" ] || return 0
	while read -r p; do kill -INT "$p" 2>/dev/null || true; done <"$TMP/perf.pids"
	while read -r p; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done <"$TMP/perf.pids"
	rm -f "$TMP/perf.pids"
	echo "perf: $PERF/{plain,sealed}-{up,worker}.data (perf report -i ... --no-children)"
}
export -f perf_start perf_stop
export PERF TMP PATHS_JSON PREFETCH

python3 - "[${PATHS_JSON%,}]" "$build/bench_seal.json" "$N" "$TOKENS" "$ROUNDS" \
	"$LLAMA_N" "$LLAMA_TOKENS" "$LLAMA_ROUNDS" <<'PY'
import glob, http.client, json, os, statistics, subprocess, sys, time
paths = json.loads(sys.argv[1])
out = sys.argv[2]
cfg = {"sim": [int(x) for x in sys.argv[3:6]], "llama": [int(x) for x in sys.argv[6:9]]}
prefetch = os.environ.get("PREFETCH", "0") != "0"
conns = {p["name"]: http.client.HTTPConnection("127.0.0.1", p["port"]) for p in paths}

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
                       "ignore_eos": True,
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

def rotate(lst, i):
    i %= len(lst)
    return lst[i:] + lst[:i]

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]

res = {"load_before": os.getloadavg()}
lines = []
for eng in ("sim", "llama"):
    ps = [p for p in paths if p["engine"] == eng]
    if not ps:
        continue
    n, tokens, rounds = cfg[eng]
    names = [p["name"] for p in ps]
    for m in names:          # warm up
        for _ in range(5):
            stream(m, 1)
    perf_ttfb = eng == "sim" and os.environ.get("PERF_PHASE") == "ttfb"
    if perf_ttfb:
        subprocess.run(["bash", "-c", "perf_start"], check=False)
    ttfb = {m: [] for m in names}
    byname = {p["name"]: p for p in ps}
    rcpu = {m: [0, 0] for m in names}    # troop up, worker: ns over the TTFB requests
    for i in range(n):
        for m in rotate(names, i):
            pids = (byname[m]["up_pid"], byname[m]["worker_pids"])
            before = [cpu_ns(pids[0]), sum(cpu_ns(x) for x in pids[1])]
            ttfb[m].append(stream(m, 1)[0])
            after = [cpu_ns(pids[0]), sum(cpu_ns(x) for x in pids[1])]
            for k in range(2):
                rcpu[m][k] += after[k] - before[k]
    if perf_ttfb:
        subprocess.run(["bash", "-c", "perf_stop"], check=False)
    elif eng == "sim":
        subprocess.run(["bash", "-c", "perf_start"], check=False)
    tput = {m: [] for m in names}
    cpu = {m: [0, 0] for m in names}     # troop up, worker: ns over the rounds
    evs = {m: 0 for m in names}
    for i in range(rounds):
        for p in rotate(ps, i):
            m = p["name"]
            pids = (p["up_pid"], p["worker_pids"])
            before = [cpu_ns(pids[0]), sum(cpu_ns(x) for x in pids[1])]
            _, ev, secs = stream(m, tokens)
            after = [cpu_ns(pids[0]), sum(cpu_ns(x) for x in pids[1])]
            for k in range(2):
                cpu[m][k] += after[k] - before[k]
            evs[m] += ev
            tput[m].append(ev / secs)
    if eng == "sim" and not perf_ttfb:
        subprocess.run(["bash", "-c", "perf_stop"], check=False)
    for p in ps:
        m = p["name"]
        p.update({"ttfb_p50_ms": pct(ttfb[m], 0.5), "ttfb_p99_ms": pct(ttfb[m], 0.99),
                  "events_per_s": statistics.median(tput[m]), "events_per_s_rounds": tput[m],
                  "events": evs[m] / rounds,
                  "up_cpu_us_per_kevent": cpu[m][0] / evs[m],
                  "worker_cpu_us_per_kevent": cpu[m][1] / evs[m],
                  "up_cpu_us_per_request": rcpu[m][0] / n / 1000,
                  "worker_cpu_us_per_request": rcpu[m][1] / n / 1000})
        lines.append("%-18s: ttfb p50 %.3f ms p99 %.3f ms (CPU per request: troop up %.0f us, "
                     "worker %.0f us), %.0f events/s (%.0f events a "
                     "stream); CPU per 1000 events: troop up %.0f us, worker %.0f us" %
                     (m, p["ttfb_p50_ms"], p["ttfb_p99_ms"], p["up_cpu_us_per_request"],
                      p["worker_cpu_us_per_request"], p["events_per_s"], p["events"],
                      p["up_cpu_us_per_kevent"], p["worker_cpu_us_per_kevent"]))
    for lbl in ("new", "base"):
        pp = {p["mode"]: p for p in ps if p["build"] == lbl}
        if len(pp) < 2:
            continue
        a, b = pp["plain"], pp["sealed"]
        # each round of the TTFB loop runs every path back to back: the
        # median of the rounds' differences follows the machine's load less
        # than the difference of the medians
        paired50 = statistics.median(y - x for x, y in zip(ttfb[a["name"]], ttfb[b["name"]]))
        add50 = b["ttfb_p50_ms"] - a["ttfb_p50_ms"]
        add99 = b["ttfb_p99_ms"] - a["ttfb_p99_ms"]
        paired = statistics.median(s / q for s, q in zip(b["events_per_s_rounds"],
                                                         a["events_per_s_rounds"]))
        ratio = b["events_per_s"] / a["events_per_s"]
        cpu_ratio = ((a["up_cpu_us_per_kevent"] + a["worker_cpu_us_per_kevent"]) /
                     (b["up_cpu_us_per_kevent"] + b["worker_cpu_us_per_kevent"]))
        tag = "%s %s" % (eng, lbl)
        res["%s_%s" % (eng, lbl)] = {"added_ttfb_p50_ms": add50, "added_ttfb_p99_ms": add99,
                                     "added_ttfb_paired_ms": paired50,
                                     "throughput_ratio": paired,
                                     "throughput_ratio_of_medians": ratio,
                                     "cpu_ratio": cpu_ratio}
        lines.append("RESULT seal [%s] added ttfb p50 %.3f ms (median of %d paired "
                     "differences; difference of p50s %.3f ms; %s) (target < 0.1), p99 %.3f ms" %
                     (tag, paired50, n, add50, "tickets fetched ahead" if prefetch else
                      "/authorize on the path", add99))
        lines.append("RESULT seal [%s] single-stream throughput sealed/plain %.3f (median of "
                     "%d paired rounds; ratio of medians %.3f) (target >= 0.95)" %
                     (tag, paired, rounds, ratio))
        lines.append("RESULT seal [%s] CPU per event plain/sealed (troop up + worker) %.3f"
                     % (tag, cpu_ratio))
res["load_after"] = os.getloadavg()
res["paths"] = paths
json.dump(res, open(out, "w"), indent=1)
for l in lines:
    print(l)
print("load average %.2f before, %.2f after (2 cores shared)" % (res["load_before"][0],
      res["load_after"][0]))
PY
