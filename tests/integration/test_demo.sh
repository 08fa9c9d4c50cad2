#!/usr/bin/env bash
# test_demo.sh - `troop demo --no-wait --simulator` on private ports: a
# coordinator, a worker on the engine simulator and `troop up` start, one
# completion streams through the whole chain, and everything stops cleanly.
# The demo runs twice in a row in the same home and demo directory: the
# second run must not read the first run's logs (it once handed the worker
# the old simulator's port and gave up waiting for a model).  The simulator
# is forced, so that an engine running on this machine's default ports
# (Ollama, llama.cpp, ...) changes nothing.
set -u
BIN=${TROOP_BIN:?TROOP_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/../../scripts/free-ports.sh"
out="$tmp/demo.out"
fail() { echo "FAIL: $*"; cat "$out"; for f in "$tmp"/home/demo/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
for run in 1 2; do
  base=$(free_base)
  TROOP_HOME="$tmp/home" timeout 120 "$BIN" demo --no-wait --simulator \
    --coordinator-port "$base" --worker-port $((base + 1)) --client-port $((base + 2)) \
    >"$out" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "run $run: demo exited $rc"
  grep -q "ENGINE SIMULATOR" "$out" || fail "run $run: no simulator banner"
  grep -q "It works" "$out" || fail "run $run: no completion"
  # the streamed text is the line after the prompt; it must not be empty
  text=$(awk '/^> /{getline; print; exit}' "$out")
  [ -n "$text" ] || fail "run $run: empty completion"
  grep -q "stopping coordinator" "$out" || fail "run $run: no ordered shutdown"
  # every child exited (no stray processes on the demo's ports)
  sleep 0.5
  if (exec 3<>/dev/tcp/127.0.0.1/$base) 2>/dev/null; then fail "run $run: coordinator still listening"; fi
  [ "$(stat -c %a "$tmp/home/demo")" = 700 ] || fail "demo dir mode $(stat -c %a "$tmp/home/demo")"
  echo "demo run $run ok: $text"
done
