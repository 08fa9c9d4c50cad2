#!/usr/bin/env bash
# test_worker_sigterm.sh - a worker exits promptly on SIGTERM whatever it
# is doing.  Next to a coordinator that sets a proof-of-hardware challenge
# far too big to finish in the test (minutes of CPU), the worker starts
# computing; SIGTERM during the computation must end the process, with
# status 0, within 2 seconds (the computation is cancelled, not waited
# for).  A second worker, idle with no job in flight, also exits within 2 s;
# so does a third whose coordinator hangs (accepts connections, never
# answers): its heartbeat call is aborted and the OFFLINE heartbeat is
# short.
# The challenge is many rounds of a small matrix (1024, 4096 rounds):
# minutes in all, while one round of a row block, the step between two
# checks of the cancel flag, stays well under a second even in the
# unoptimised sanitizer build.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init
log=$CHAIN_TMP/coordinator.log
"$TROOP" coordinator --listen 127.0.0.1:0 --data-dir "$CHAIN_TMP/coord" \
	--poh-cpu-matrix-size 1024 --poh-cpu-rounds 4096 --poh-min-node-age 0 >"$log" 2>&1 &
CHAIN_PIDS+=($!)
port=$(chain_port_from_log "$log" coordinator_started $!) || exit 1
COORD_URL=http://127.0.0.1:$port
chain_sim a

# stop_within NAME PID LOG: SIGTERM, then the process must be gone within 2 s
stop_within() {
	local name=$1 pid=$2 log=$3 t0 t1 ms rc
	t0=$(date +%s%N)
	kill -TERM "$pid"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	if kill -0 "$pid" 2>/dev/null; then
		chain_fail "$name still running 2 s after SIGTERM"
		tail -20 "$log"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return
	fi
	wait "$pid"
	rc=$?
	[ "$rc" = 0 ] || { chain_fail "$name exited $rc after SIGTERM"; tail -20 "$log"; return; }
	echo "ok: $name exited ${ms} ms after SIGTERM"
}

chain_worker a "ollama=http://127.0.0.1:$SIM_PORT" --donate always --poh-device cpu
wlog=$CHAIN_TMP/worker-a.log
for _ in $(seq 1 300); do
	grep -q poh_progress "$wlog" && break
	sleep 0.1
done
grep -q poh_challenge "$wlog" || { chain_fail "the worker never started its proof"; tail -20 "$wlog"; }
sleep 0.5   # well inside the computation
stop_within "computing worker" "$WORKER_PID" "$wlog"
grep -q "poh_failed" "$wlog" && chain_fail "a cancelled proof was reported as failed"

chain_worker b "ollama=http://127.0.0.1:$SIM_PORT" --donate always --no-verify
sleep 0.5
stop_within "idle worker" "$WORKER_PID" "$CHAIN_TMP/worker-b.log"
# a coordinator that accepts connections and never answers
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(128)
print(s.getsockname()[1], flush=True)
time.sleep(600)' >"$CHAIN_TMP/hung.port" &
CHAIN_PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$CHAIN_TMP/hung.port" ] && break; sleep 0.05; done
COORD_URL=http://127.0.0.1:$(cat "$CHAIN_TMP/hung.port")
# (its start waits for the coordinator's key and first heartbeat to time out)
mkdir -p "$CHAIN_TMP/home-worker-c"
TROOP_HOME=$CHAIN_TMP/home-worker-c "$TROOP" worker --coordinator "$COORD_URL" \
	--listen 127.0.0.1:0 --advertise 127.0.0.1 --engine "ollama=http://127.0.0.1:$SIM_PORT" \
	--name c --donate always --no-verify >"$CHAIN_TMP/worker-c.log" 2>&1 &
WORKER_PID=$!
CHAIN_PIDS+=($!)
for _ in $(seq 1 600); do
	grep -q worker_started "$CHAIN_TMP/worker-c.log" && break
	sleep 0.1
done
grep -q worker_started "$CHAIN_TMP/worker-c.log" || chain_fail "worker c did not start"
sleep 1    # its heartbeat thread is now waiting on the hung coordinator
stop_within "worker of a hung coordinator" "$WORKER_PID" "$CHAIN_TMP/worker-c.log"
[ "$CHAIN_FAILS" -eq 0 ]
