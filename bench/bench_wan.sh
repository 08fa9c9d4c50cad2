#!/usr/bin/env bash
# bench_wan.sh - time to first byte over a wide-area link: the app and
# `troop up` on one side; the coordinator, a worker and its engine (the
# simulator) on the other, every connection across the link going through
# bench/delay_proxy.py, which adds DELAY_MS each way and a round trip per
# new connection (a stand-in for `tc netem`, which needs a kernel module
# that not every machine has).  For each of N streamed requests, one after
# another, the time to the first byte of the reply (curl's
# time_starttransfer):
#   direct     the app talks to the engine across the link, keeping its
#              connection (as troop up keeps its connections to workers)
#   direct-new the same with a new connection each time
#   prefetch   through troop up with tickets fetched ahead (--prefetch-idle 60):
#              requests after the first need no /authorize round trip
#   authorize  through troop up with --prefetch-idle 0: every request waits
#              for /authorize across the link first
# Medians of requests 2..N (the first of a session always authorizes),
# with the ratio to direct.  Target (issue: speed under concurrency):
# prefetch within 10% of direct.
#
#   bench/bench_wan.sh [BUILD_DIR]     N=15 DELAY_MS=20
set -u
build=${1:-${BUILD_DIR:-build}}
case $build in /*) ;; *) build=$PWD/$build ;; esac
here=$(cd "$(dirname "$0")" && pwd)
N=${N:-15}
DELAY_MS=${DELAY_MS:-20}
TROOP=$build/troop
SIM=$build/engine-sim
[ -x "$TROOP" ] && [ -x "$SIM" ] || { echo "bench_wan: build troop and engine-sim first"; exit 1; }
tmp=$(mktemp -d /tmp/troop-bench-wan.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# run LOG CMD...: in the background
run() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	pids+=($!)
}
wait_for() { # wait_for FILE PATTERN
	for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "bench_wan: $1 never said '$2'"; cat "$1"; exit 1
}
port_of() { # port_of FILE: the port in its "listening on" or port= line
	sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p; s/.* port=\([0-9]*\).*/\1/p' "$1" | head -1
}
# far LOCAL_NAME TARGET_PORT: a delayed way to 127.0.0.1:TARGET_PORT; sets FAR
far() {
	run "$tmp/proxy-$1.log" python3 "$here/delay_proxy.py" 0 127.0.0.1 "$2" "$DELAY_MS"
	wait_for "$tmp/proxy-$1.log" "listening on"
	FAR=$(port_of "$tmp/proxy-$1.log")
}

MODEL=wan:1b
run "$tmp/coord.log" "$TROOP" coordinator --listen 127.0.0.1:0 --data-dir "$tmp/coord" \
	--allow-unverified --max-jobs-other 0 --max-tickets 100000
wait_for "$tmp/coord.log" coordinator_started
COORD=$(port_of "$tmp/coord.log")
run "$tmp/sim.log" "$SIM" --listen 127.0.0.1:0 --models "$MODEL"
wait_for "$tmp/sim.log" "listening on"
ENGINE=$(port_of "$tmp/sim.log")
run "$tmp/worker.log" env TROOP_HOME="$tmp/worker" "$TROOP" worker \
	--coordinator "http://127.0.0.1:$COORD" --listen 127.0.0.1:0 --advertise 127.0.0.1 \
	--engine "ollama=http://127.0.0.1:$ENGINE" --donate always --no-verify
wait_for "$tmp/worker.log" worker_started
WORKER=$(sed -n 's/.*worker_started.* port=\([0-9]*\).*/\1/p' "$tmp/worker.log" | head -1)
# the client's side sees all three across the link; the worker is told
# to advertise its far side
far coord "$COORD"; FAR_COORD=$FAR
far engine "$ENGINE"; FAR_ENGINE=$FAR
far worker "$WORKER"; FAR_WORKER=$FAR
kill "${pids[2]}" 2>/dev/null; wait "${pids[2]}" 2>/dev/null
run "$tmp/worker2.log" env TROOP_HOME="$tmp/worker" "$TROOP" worker \
	--coordinator "http://127.0.0.1:$COORD" --listen "127.0.0.1:$WORKER" --advertise 127.0.0.1 \
	--advertise-port "$FAR_WORKER" --engine "ollama=http://127.0.0.1:$ENGINE" --donate always \
	--no-verify
wait_for "$tmp/worker2.log" worker_started
for v in prefetch authorize; do
	extra="--prefetch-idle 60"
	[ $v = authorize ] && extra="--prefetch-idle 0"
	run "$tmp/up-$v.log" env TROOP_HOME="$tmp/client" "$TROOP" up \
		--coordinator "http://127.0.0.1:$FAR_COORD" --listen 127.0.0.1:0 $extra
	wait_for "$tmp/up-$v.log" client_started
	eval "UP_$v=\$(sed -n 's/.*client_started.* port=\([0-9]*\).*/\1/p' \"\$tmp/up-\$v.log\" | head -1)"
done
for _ in $(seq 1 100); do
	curl -s "http://127.0.0.1:$COORD/peers?model=$MODEL" | grep -q "\"port\":$FAR_WORKER" && break
	sleep 0.1
done

body="{\"model\":\"$MODEL\",\"stream\":true,\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"far away\"}]}"
W='%{time_starttransfer} %{http_code}\n'
H='Content-Type: application/json'
declare -A med
for v in direct direct-new prefetch authorize; do
	: >"$tmp/$v.out"
	case $v in
	direct) # one curl, one kept connection: the requests one after another
		args=()
		for i in $(seq 1 "$N"); do
			[ "$i" -gt 1 ] && args+=(--next)
			args+=(-s -o /dev/null -w "$W" -H "$H" -d "$body"
			    "http://127.0.0.1:$FAR_ENGINE/v1/chat/completions")
		done
		curl "${args[@]}" >>"$tmp/$v.out" ;;
	*)
		case $v in
		direct-new) url=http://127.0.0.1:$FAR_ENGINE/v1/chat/completions ;;
		prefetch) url=http://127.0.0.1:$UP_prefetch/v1/chat/completions ;;
		authorize) url=http://127.0.0.1:$UP_authorize/v1/chat/completions ;;
		esac
		for i in $(seq 1 "$N"); do
			curl -s -o /dev/null -w "$W" -m 30 -H "$H" -d "$body" "$url" >>"$tmp/$v.out"
			sleep 0.1
		done ;;
	esac
	if grep -qv ' 200$' "$tmp/$v.out"; then
		echo "bench_wan: $v: a request failed: $(grep -v ' 200$' "$tmp/$v.out" | head -3)"
		exit 1
	fi
	med[$v]=$(tail -n +2 "$tmp/$v.out" | cut -d' ' -f1 | sort -n |
		awk '{a[NR]=$1} END {printf "%.1f", 1000 * (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}')
done
echo "bench_wan: ${DELAY_MS} ms each way ($((2 * DELAY_MS)) ms round trip), median time to first" \
	"byte of requests 2..$N, load $(cut -d' ' -f1-3 /proc/loadavg)"
for v in direct direct-new prefetch authorize; do printf '  %-10s %8s ms\n' "$v" "${med[$v]}"; done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "RESULT wan_ttfb_direct_ms ${med[direct]} (new connection each: ${med[direct-new]})"
echo "RESULT wan_ttfb_prefetch_ms ${med[prefetch]} ratio_to_direct" \
	"$(ratio "${med[prefetch]}" "${med[direct]}") (target <= 1.10)"
echo "RESULT wan_ttfb_authorize_ms ${med[authorize]} ratio_to_direct" \
	"$(ratio "${med[authorize]}" "${med[direct]}")"
