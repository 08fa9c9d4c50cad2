#!/usr/bin/env bash
# bench_client.sh - the client proxy's benchmark, in one run, side by side:
#
#   direct  app -> engine simulator
#   troop   app -> troop up -> troop worker -> engine simulator
#           (each request: a signed /authorize to a real coordinator first)
#   nginx   app -> nginx -> nginx -> engine simulator
#           (two reverse-proxy hops, proxy_buffering off, keep-alive
#           upstreams: the same two hops done by a tuned C proxy)
#
# Figures:
#   - added time to first byte (p50, p99) over direct, /authorize included
#     for troop: N requests per path one at a time on keep-alive
#     connections, the paths interleaved request by request so that all
#     see the same (shared, noisy) machine; and the troop chain again
#     through a second troop up that keeps a ticket fetched ahead
#     (--prefetch-idle): a session's later requests, no /authorize first
#     (the first of its requests pays it once);
#   - streaming throughput (tokens/s of an unpaced engine) as a ratio to
#     direct, for 1 and 8 streams at once, median of ROUNDS interleaved
#     rounds;
#   - 256 streams at once through one `troop up` and one worker, each
#     checked event by event against the same prompt asked directly:
#     lost, extra or out-of-place events.
# Every hop runs one thread (troop --threads 1, nginx worker_processes 1).
# The load generator (bench/bench_client_load.c) is built here with cc
# against the build's libtroop.  Results also go to $BUILD/bench_client.json.
#
# Usage: bench/bench_client.sh [build-dir]   (env: N=600 TOKENS=200000 ROUNDS=5)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
N=${N:-600}
TOKENS=${TOKENS:-200000}
ROUNDS=${ROUNDS:-5}

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
	{ echo "bench_client: nginx is not installed (scripts/install-deps.sh bench)"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target troop engine-sim troop_lib -j2 >/dev/null
LOAD=$build/bench_client_load
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/src/lib" -I"$root/src" \
	"$root/bench/bench_client_load.c" "$build/libtroop_lib.a" \
	$(pkg-config --cflags --libs libsodium jansson libevent libevent_pthreads libcurl) \
	-lpthread -lm -o "$LOAD"

# the tests' harness starts and stops every process and removes the temp
# dir; the processes log at warn level (no per-request lines), so their
# ports are chosen here and readiness is their /health
export TROOP_BUILD_DIR=$build TROOP_BIN=$build/troop
. "$root/tests/integration/troop_chain.sh"
chain_init troop-bench
TMP=$CHAIN_TMP

export TROOP_LOG_LEVEL=warn
SIMP=$(chain_free_port); CP=$(chain_free_port); WP=$(chain_free_port); UP=$(chain_free_port)
NA=$(chain_free_port); NB=$(chain_free_port)

chain_spawn "$TMP/sim.log" "" "$SIM" --listen 127.0.0.1:$SIMP --tokens-per-second 0 --context 1048576
chain_spawn "$TMP/coord.log" "" "$TROOP" coordinator --listen 127.0.0.1:$CP --data-dir "$TMP/coord" \
	--allow-unverified --threads 1 --starter-credits 1000000000000 --reserve-seconds 3600 \
	--max-jobs-other 0 --max-jobs-new 0 --max-tickets 4096
chain_wait_http "http://127.0.0.1:$SIMP/v1/models" || exit 1
chain_wait_http "http://127.0.0.1:$CP/health" || exit 1
chain_spawn "$TMP/worker.log" "$TMP/worker" "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WP --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SIMP" \
	--max-jobs 4096 --donate always --threads 1
WORKER_PID=$CHAIN_PID
chain_spawn "$TMP/up.log" "$TMP/client" "$TROOP" up --listen 127.0.0.1:$UP \
	--coordinator "http://127.0.0.1:$CP" --threads 1
UP_PID=$CHAIN_PID
# the same chain with a ticket fetched ahead for the next request (a
# second troop up and account): what a session's later requests see
UPA=$(chain_free_port)
chain_spawn "$TMP/up-ahead.log" "$TMP/client-ahead" "$TROOP" up --listen 127.0.0.1:$UPA \
	--coordinator "http://127.0.0.1:$CP" --threads 1 --prefetch-idle 60
chain_wait_http "http://127.0.0.1:$UP/health" || exit 1
chain_wait_http "http://127.0.0.1:$UPA/health" || exit 1
for _ in $(seq 1 300); do
	curl -s "http://127.0.0.1:$CP/v1/models" | grep -q llama3 && break
	sleep 0.05
done

# two nginx hops: A (front) -> B -> engine simulator
nginx_conf() { # NAME LISTEN UPSTREAM
	mkdir -p "$TMP/nginx-$1"
	cat >"$TMP/nginx-$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx-$1/nginx.pid;
error_log $TMP/nginx-$1/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-$1/body;
    proxy_temp_path $TMP/nginx-$1/proxy;
    fastcgi_temp_path $TMP/nginx-$1/fastcgi;
    uwsgi_temp_path $TMP/nginx-$1/uwsgi;
    scgi_temp_path $TMP/nginx-$1/scgi;
    keepalive_requests 1000000;
    upstream next { server 127.0.0.1:$3; keepalive 1024; }
    server {
        listen 127.0.0.1:$2;
        location / {
            proxy_pass http://next;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            tcp_nodelay on;
        }
    }
}
EOF
	"$NGINX" -p "$TMP/nginx-$1" -c "$TMP/nginx-$1/nginx.conf" -e "$TMP/nginx-$1/error.log" &
	CHAIN_PIDS+=($!)
}
nginx_conf b $NB $SIMP
NGB_PID=$!
nginx_conf a $NA $NB
NGA_PID=$!
chain_wait_http "http://127.0.0.1:$NA/v1/models"
# CPU time (ms) of a process and its children (nginx's worker process)
HZ=$(getconf CLK_TCK)
cpu_ms() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1"); do
		total=$((total + $(awk -v hz="$HZ" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$p/stat")))
	done
	echo $total
}
cpu_all() { echo "$(cpu_ms $UP_PID) $(cpu_ms $WORKER_PID) $(cpu_ms $NGA_PID) $(cpu_ms $NGB_PID)"; }

DIRECT=http://127.0.0.1:$SIMP/v1/chat/completions
TROOPC=http://127.0.0.1:$UP/v1/chat/completions
NGINXC=http://127.0.0.1:$NA/v1/chat/completions
AHEADC=http://127.0.0.1:$UPA/v1/chat/completions

echo "== time to first byte: $N requests to each path, one at a time, interleaved"
ttfb=$("$LOAD" ttfb "$N" "$DIRECT" "$TROOPC" "$NGINXC" "$AHEADC"); echo "$ttfb"
echo "== streaming throughput: median of $ROUNDS rounds, paths interleaved"
c0=$(cpu_all)
tp1=$("$LOAD" throughput 1 "$TOKENS" "$ROUNDS" "$DIRECT" "$TROOPC" "$NGINXC"); echo "$tp1"
tp8=$("$LOAD" throughput 8 $((TOKENS / 8)) "$ROUNDS" "$DIRECT" "$TROOPC" "$NGINXC"); echo "$tp8"
c1=$(cpu_all)
echo "cpu ms (up worker nginxA nginxB): before $c0, after $c1"
echo "== 256 streams at once through one troop up and one worker (and through nginx)"
s=$("$LOAD" stream "$TROOPC" 256 200 "$DIRECT" || true); echo "troop  $s"
sn=$("$LOAD" stream "$NGINXC" 256 200 "$DIRECT" || true); echo "nginx  $sn"

python3 - "$build/bench_client.json" "$((2 * ROUNDS * TOKENS))" "$c0" "$c1" "$ttfb" "$tp1" "$tp8" "$s" "$sn" <<'PY'
import json, sys
out, tokens = sys.argv[1], int(sys.argv[2])
c0, c1 = [list(map(int, a.split())) for a in sys.argv[3:5]]
(d, t, n, a), tp1, tp8, s, sn = [json.loads(x) for x in sys.argv[5:]]
# CPU per token of each hop over both throughput runs (warm-ups included: a rounding error)
cpu = [(b - a) * 1000.0 / tokens for a, b in zip(c0, c1)]
def added(x, k): return x[k] - d[k]
r = {
    "ttfb_us": {"direct": d, "troop": t, "nginx": n, "troop_tickets_ahead": a},
    "ttfb_added_ahead_p50_us": added(a, "ttfb_p50_us"),
    "ttfb_added_ahead_p99_us": added(a, "ttfb_p99_us"),
    "ttfb_added_troop_p50_us": added(t, "ttfb_p50_us"),
    "ttfb_added_troop_p99_us": added(t, "ttfb_p99_us"),
    "ttfb_added_nginx_p50_us": added(n, "ttfb_p50_us"),
    "ttfb_added_nginx_p99_us": added(n, "ttfb_p99_us"),
    "throughput_x1": tp1, "throughput_x8": tp8,
    "throughput_ratio_troop_x1": tp1[1]["tokens_per_s_median"] / tp1[0]["tokens_per_s_median"],
    "throughput_ratio_nginx_x1": tp1[2]["tokens_per_s_median"] / tp1[0]["tokens_per_s_median"],
    "throughput_ratio_troop_x8": tp8[1]["tokens_per_s_median"] / tp8[0]["tokens_per_s_median"],
    "throughput_ratio_nginx_x8": tp8[2]["tokens_per_s_median"] / tp8[0]["tokens_per_s_median"],
    "cpu_us_per_token": {"troop_up": cpu[0], "troop_worker": cpu[1], "nginx_a": cpu[2],
                         "nginx_b": cpu[3]},
    "streams_256_troop": s, "streams_256_nginx": sn,
    "failed_requests": d["failed"] + t["failed"] + n["failed"] + a["failed"],
}
json.dump(r, open(out, "w"), indent=2)
print()
print("                               troop chain   nginx chain   target (troop)")
print("added TTFB p50 (us)             %9d     %9d     < 500" % (r["ttfb_added_troop_p50_us"], r["ttfb_added_nginx_p50_us"]))
print("added TTFB p99 (us)             %9d     %9d" % (r["ttfb_added_troop_p99_us"], r["ttfb_added_nginx_p99_us"]))
print("  with a ticket ahead, p50/p99  %5d/%-6d                 < 500 (p50)" % (r["ttfb_added_ahead_p50_us"], r["ttfb_added_ahead_p99_us"]))
print("throughput / direct, 1 stream   %9.2f     %9.2f     >= 0.70, >= nginx" % (r["throughput_ratio_troop_x1"], r["throughput_ratio_nginx_x1"]))
print("throughput / direct, 8 streams  %9.2f     %9.2f" % (r["throughput_ratio_troop_x8"], r["throughput_ratio_nginx_x8"]))
print("CPU per token, per hop (us)      %4.2f+%4.2f     %4.2f+%4.2f     (client+worker, nginx A+B)" % tuple(cpu))
print("256 streams, lost/extra/out-of-place events, bad streams:")
print("                                %d/%d/%d, %d      %d/%d/%d, %d     0/0/0, 0" % (
    s["lost"], s["extra"], s["out_of_place"], s["bad_streams"],
    sn["lost"], sn["extra"], sn["out_of_place"], sn["bad_streams"]))
print("direct: TTFB p50 %d us, p99 %d us; %d tokens/s (1 stream), %d (8 streams)" % (
    d["ttfb_p50_us"], d["ttfb_p99_us"], tp1[0]["tokens_per_s_median"], tp8[0]["tokens_per_s_median"]))
print("failed requests: %d; results in %s" % (r["failed_requests"], out))
PY
