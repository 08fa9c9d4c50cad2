#!/usr/bin/env bash
# test_demo.sh - `troop demo --no-wait` on private ports: a coordinator,
# a worker on the engine simulator and `troop up` start, one completion
# streams through the whole chain, and everything stops cleanly.
set -u
BIN=${TROOP_BIN:?TROOP_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# three consecutive free ports below the kernel's ephemeral range
base=$(python3 -c '
import random, socket
for _ in range(200):
    b = random.randrange(12000, 30000)
    try:
        socks = []
        for p in range(b, b + 3):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(b); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
')
out="$tmp/demo.out"
TROOP_HOME="$tmp/home" timeout 120 "$BIN" demo --no-wait --dir "$tmp/demo" \
  --coordinator-port "$base" --worker-port $((base + 1)) --client-port $((base + 2)) \
  >"$out" 2>&1
rc=$?
fail() { echo "FAIL: $*"; cat "$out"; for f in "$tmp"/demo/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
[ $rc -eq 0 ] || fail "demo exited $rc"
grep -q "ENGINE SIMULATOR" "$out" || fail "no simulator banner"
grep -q "It works" "$out" || fail "no completion"
# the streamed text is the line after the prompt; it must not be empty
text=$(awk '/^> /{getline; print; exit}' "$out")
[ -n "$text" ] || fail "empty completion"
grep -q "stopping coordinator" "$out" || fail "no ordered shutdown"
# every child exited (no stray processes on the demo's ports)
sleep 0.5
if (exec 3<>/dev/tcp/127.0.0.1/$base) 2>/dev/null; then fail "coordinator still listening"; fi
echo "demo ok: $text"
