#!/usr/bin/env bash
# test_fresh_home.sh - the first commands a new user types, with a HOME
# that has no .config (a fresh account): `troop id`, `troop coordinator`,
# `troop worker`, `troop up` and `troop demo` each create the directories
# they need, with their parents, 0700.  A coordinator data directory that
# other users can read is fixed, with a warning.
set -u
BIN=${TROOP_BIN:?TROOP_BIN not set}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
. "$(dirname "$0")/../../scripts/free-ports.sh"
# wait_log FILE PATTERN PID: until FILE has PATTERN (0) or PID dies / 20 s (1)
wait_log() {
  for _ in $(seq 200); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
unset TROOP_HOME
mode() { stat -c %a "$1"; }

# troop id
export HOME=$tmp/h-id
mkdir -p "$HOME"
"$BIN" id >"$tmp/id.log" 2>&1 || fail "troop id exited $?"
[ "$(mode "$HOME/.config/monkey-troop")" = 700 ] || fail "id: home mode"

base=$(free_base)
# troop coordinator (its default data directory)
export HOME=$tmp/h-coord
mkdir -p "$HOME"
"$BIN" coordinator --listen 127.0.0.1:$base --allow-unverified >"$tmp/coord.log" 2>&1 &
cpid=$!; pids+=($cpid)
wait_log "$tmp/coord.log" coordinator_started $cpid || fail "coordinator did not start"
d=$HOME/.config/monkey-troop/coordinator
[ "$(mode "$d")" = 700 ] || fail "coordinator data dir mode $(mode "$d")"
[ "$(mode "$HOME/.config")" = 700 ] || fail ".config mode $(mode "$HOME/.config")"

# troop worker (identity and receipt spool under a fresh home)
export HOME=$tmp/h-worker
mkdir -p "$HOME"
"$BIN" worker --coordinator http://127.0.0.1:$base --listen 127.0.0.1:$((base + 1)) \
  --advertise 127.0.0.1 --engine ollama=http://127.0.0.1:9 --no-verify >"$tmp/worker.log" 2>&1 &
wpid=$!; pids+=($wpid)
wait_log "$tmp/worker.log" worker_started $wpid || fail "worker did not start"
[ -f "$HOME/.config/monkey-troop/identity.key" ] || fail "worker: no identity"
[ "$(mode "$HOME/.config/monkey-troop")" = 700 ] || fail "worker: home mode"
[ "$(mode "$HOME/.config/monkey-troop/worker/receipts")" = 700 ] || fail "worker: spool mode"

# troop up
export HOME=$tmp/h-up
mkdir -p "$HOME"
"$BIN" up --coordinator http://127.0.0.1:$base --listen 127.0.0.1:$((base + 2)) >"$tmp/up.log" 2>&1 &
upid=$!; pids+=($upid)
wait_log "$tmp/up.log" client_started $upid || fail "troop up did not start"
[ -f "$HOME/.config/monkey-troop/identity.key" ] || fail "up: no identity"
kill $upid $wpid
wait $upid $wpid 2>/dev/null
kill $cpid
wait $cpid 2>/dev/null

# a coordinator data directory others can read: fixed with a warning
export HOME=$tmp/h-coord
chmod 755 "$d"
"$BIN" coordinator --listen 127.0.0.1:$base --allow-unverified >"$tmp/coord2.log" 2>&1 &
cpid=$!; pids+=($cpid)
wait_log "$tmp/coord2.log" coordinator_started $cpid || fail "coordinator did not restart"
grep -q "warning: $d was open to other users (mode 0755); changed it to 0700" "$tmp/coord2.log" \
  || fail "no warning about the loose mode"
[ "$(mode "$d")" = 700 ] || fail "loose data dir left $(mode "$d")"
kill $cpid
wait $cpid 2>/dev/null

# troop demo
export HOME=$tmp/h-demo
mkdir -p "$HOME"
base=$(free_base)
timeout 120 "$BIN" demo --no-wait --simulator --coordinator-port $base \
  --worker-port $((base + 1)) --client-port $((base + 2)) >"$tmp/demo.log" 2>&1 \
  || fail "troop demo exited $?"
grep -q "It works" "$tmp/demo.log" || fail "demo: no completion"
[ "$(mode "$HOME/.config/monkey-troop/demo")" = 700 ] || fail "demo dir mode"
echo "fresh home ok"
