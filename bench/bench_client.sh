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
#     for troop: N requests one after another on a keep-alive connection;
#   - streaming throughput (tokens/s of an unpaced engine) as a ratio to
#     direct, for 1 and 8 streams at once;
#   - 256 streams at once through one `troop up` and one worker, each
#     checked event by event against the same prompt asked directly:
#     lost, extra or out-of-place events.
# Every hop runs one thread (troop --threads 1, nginx worker_processes 1).
# The load generator (bench/bench_client_load.c) is built here with cc
# against the build's libtroop.  Results also go to $BUILD/bench_client.json.
#
# Usage: bench/bench_client.sh [build-dir]   (env: N=2000 TOKENS=200000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$root/$build ;; esac
N=${N:-2000}
TOKENS=${TOKENS:-200000}

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

TMP=$(mktemp -d "${TMPDIR:-/tmp}/troop-bench-XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # URL
	for _ in $(seq 1 300); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.02
	done
	echo "bench_client: $1 did not come up"; exit 1
}

TROOP=$build/troop
SIMP=$(freeport); CP=$(freeport); WP=$(freeport); UP=$(freeport); NA=$(freeport); NB=$(freeport)

"$build/engine-sim" --listen 127.0.0.1:$SIMP --tokens-per-second 0 >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
TROOP_LOG_LEVEL=warn "$TROOP" coordinator --listen 127.0.0.1:$CP --data-dir "$TMP/coord" \
	--allow-unverified --threads 1 --starter-credits 1000000000000 --reserve-seconds 1 \
	>"$TMP/coord.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIMP/v1/models"
wait_http "http://127.0.0.1:$CP/health"
TROOP_HOME=$TMP/worker TROOP_LOG_LEVEL=warn "$TROOP" worker --coordinator "http://127.0.0.1:$CP" \
	--listen 127.0.0.1:$WP --advertise 127.0.0.1 --engine "vllm=http://127.0.0.1:$SIMP" \
	--max-jobs 4096 --donate always --threads 1 >"$TMP/worker.log" 2>&1 &
PIDS+=($!)
TROOP_HOME=$TMP/client TROOP_LOG_LEVEL=warn "$TROOP" up --listen 127.0.0.1:$UP \
	--coordinator "http://127.0.0.1:$CP" --threads 1 >"$TMP/up.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/health"
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
	PIDS+=($!)
}
nginx_conf b $NB $SIMP
nginx_conf a $NA $NB
wait_http "http://127.0.0.1:$NA/v1/models"

DIRECT=http://127.0.0.1:$SIMP/v1/chat/completions
TROOPC=http://127.0.0.1:$UP/v1/chat/completions
NGINXC=http://127.0.0.1:$NA/v1/chat/completions

echo "== time to first byte, $N sequential requests each (us)"
d=$("$LOAD" ttfb "$DIRECT" "$N"); echo "direct $d"
t=$("$LOAD" ttfb "$TROOPC" "$N"); echo "troop  $t"
n=$("$LOAD" ttfb "$NGINXC" "$N"); echo "nginx  $n"
echo "== streaming throughput, $TOKENS tokens per stream"
d1=$("$LOAD" throughput "$DIRECT" 1 "$TOKENS"); echo "direct x1 $d1"
t1=$("$LOAD" throughput "$TROOPC" 1 "$TOKENS"); echo "troop  x1 $t1"
n1=$("$LOAD" throughput "$NGINXC" 1 "$TOKENS"); echo "nginx  x1 $n1"
d8=$("$LOAD" throughput "$DIRECT" 8 $((TOKENS / 8))); echo "direct x8 $d8"
t8=$("$LOAD" throughput "$TROOPC" 8 $((TOKENS / 8))); echo "troop  x8 $t8"
n8=$("$LOAD" throughput "$NGINXC" 8 $((TOKENS / 8))); echo "nginx  x8 $n8"
echo "== 256 streams at once through one troop up and one worker"
s=$("$LOAD" stream "$TROOPC" 256 200 "$DIRECT" || true); echo "troop  $s"
sn=$("$LOAD" stream "$NGINXC" 256 200 "$DIRECT" || true); echo "nginx  $sn"

python3 - "$build/bench_client.json" "$d" "$t" "$n" "$d1" "$t1" "$n1" "$d8" "$t8" "$n8" "$s" "$sn" <<'PY'
import json, sys
out = sys.argv[1]
d, t, n, d1, t1, n1, d8, t8, n8, s, sn = [json.loads(a) for a in sys.argv[2:]]
r = {
    "ttfb_direct_p50_us": d["ttfb_p50_us"], "ttfb_direct_p99_us": d["ttfb_p99_us"],
    "ttfb_added_troop_p50_us": t["ttfb_p50_us"] - d["ttfb_p50_us"],
    "ttfb_added_troop_p99_us": t["ttfb_p99_us"] - d["ttfb_p99_us"],
    "ttfb_added_nginx_p50_us": n["ttfb_p50_us"] - d["ttfb_p50_us"],
    "ttfb_added_nginx_p99_us": n["ttfb_p99_us"] - d["ttfb_p99_us"],
    "throughput_x1_tokens_per_s": {"direct": d1["events_per_s"], "troop": t1["events_per_s"],
                                   "nginx": n1["events_per_s"]},
    "throughput_x8_tokens_per_s": {"direct": d8["events_per_s"], "troop": t8["events_per_s"],
                                   "nginx": n8["events_per_s"]},
    "throughput_ratio_troop_x1": t1["events_per_s"] / d1["events_per_s"],
    "throughput_ratio_nginx_x1": n1["events_per_s"] / d1["events_per_s"],
    "throughput_ratio_troop_x8": t8["events_per_s"] / d8["events_per_s"],
    "throughput_ratio_nginx_x8": n8["events_per_s"] / d8["events_per_s"],
    "streams_256_troop": s, "streams_256_nginx": sn,
    "failed_requests": d["failed"] + t["failed"] + n["failed"] + d1["failed"] + t1["failed"]
        + n1["failed"] + d8["failed"] + t8["failed"] + n8["failed"],
}
json.dump(r, open(out, "w"), indent=2)
print()
print("                            troop chain     nginx chain   (target for troop)")
print("added TTFB p50 (us)        %10d      %10d      < 1000" % (r["ttfb_added_troop_p50_us"], r["ttfb_added_nginx_p50_us"]))
print("added TTFB p99 (us)        %10d      %10d" % (r["ttfb_added_troop_p99_us"], r["ttfb_added_nginx_p99_us"]))
print("throughput / direct, x1    %10.2f      %10.2f      >= 0.70 and >= nginx" % (r["throughput_ratio_troop_x1"], r["throughput_ratio_nginx_x1"]))
print("throughput / direct, x8    %10.2f      %10.2f" % (r["throughput_ratio_troop_x8"], r["throughput_ratio_nginx_x8"]))
print("256 streams: lost/extra/out-of-place/bad   troop %d/%d/%d/%d   nginx %d/%d/%d/%d" % (
    s["lost"], s["extra"], s["out_of_place"], s["bad_streams"],
    sn["lost"], sn["extra"], sn["out_of_place"], sn["bad_streams"]))
print("direct TTFB p50 %d us, p99 %d us; failed requests: %d" % (d["ttfb_p50_us"], d["ttfb_p99_us"], r["failed_requests"]))
print("results in", out)
PY
