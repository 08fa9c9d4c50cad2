#!/usr/bin/env bash
# test_up_sigterm.sh - a SIGTERM that reaches `troop up` while it finishes
# starting is a clean shutdown.  Its listener serves from the moment it
# logs client_started, but the process goes on a while: it asks the
# coordinator for the account's balance for its banner (up to 3 s).  The
# handler used to be installed only after that, so a SIGTERM in between
# (a test stopping it right after its first answer; systemd stopping it
# during a slow start) killed it by the signal's default action: no drain,
# no "shutdown" line, exit status 143.  Here the coordinator accepts and
# never answers, so the balance request takes its full 3 s, and the
# SIGTERM comes inside them.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init

port=$(chain_free_port)
python3 - "$port" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
held = []
while True:
    c, _ = s.accept()
    held.append(c)   # read nothing, answer nothing
PY
HOLE_PID=$!
chain_at_exit "kill $HOLE_PID 2>/dev/null"
for i in $(seq 1 100); do
	python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
		"$port" 2>/dev/null && break
	sleep 0.05
done

chain_up hole "http://127.0.0.1:$port"
t0=$(date +%s%N)
kill -TERM "$UP_PID"
wait "$UP_PID"
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log=$CHAIN_TMP/up-hole.log
[ "$rc" = 0 ] || chain_fail "troop up exited $rc after a SIGTERM during its start (143: killed by the signal)"
grep -q 'shutdown srv=client' "$log" || chain_fail "no shutdown line in its log: $(tail -5 "$log")"
grep -q 'client_stopped' "$log" || chain_fail "no client_stopped line in its log"
[ "$CHAIN_FAILS" = 0 ] && echo "ok: a SIGTERM during the start: exit 0 after $ms ms, shut down cleanly"
[ "$CHAIN_FAILS" = 0 ]
