#!/usr/bin/env bash
# test_install_deps.sh - scripts/install-deps.sh as a user with sudo: sudo
# resets the environment, so DEBIAN_FRONTEND=noninteractive must reach
# apt-get through sudo itself (without it debconf warns and may prompt).
# Runs the script with stand-ins for id, dpkg-query, sudo and apt-get on
# PATH: nothing is installed; the stand-in sudo clears the environment
# like the real one and records what apt-get saw.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/bin
mkdir -p "$bin"
cat >"$bin/id" <<'STUB'
#!/bin/sh
[ "$1" = -u ] && { echo 1000; exit 0; }
exec /usr/bin/id "$@"
STUB
cat >"$bin/dpkg-query" <<'STUB'
#!/bin/sh
# every package is missing
exit 1
STUB
cat >"$bin/sudo" <<STUB
#!/bin/sh
# like sudo's env_reset: only what is passed as VAR=value survives
exec env -i PATH="$bin:/usr/bin:/bin" LOG="$tmp/apt.log" "\$@"
STUB
cat >"$bin/apt-get" <<'STUB'
#!/bin/sh
echo "apt-get $1 DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-unset}" >>"$LOG"
STUB
cat >"$bin/tee" <<'STUB'
#!/bin/sh
cat >/dev/null
STUB
cat >"$bin/chmod" <<'STUB'
#!/bin/sh
exit 0
STUB
cat >"$bin/rm" <<'STUB'
#!/bin/sh
exit 0
STUB
chmod +x "$bin"/*
PATH="$bin:$PATH" DEBIAN_FRONTEND= bash "$src/scripts/install-deps.sh" build >"$tmp/out" 2>&1 ||
  { echo "FAIL: install-deps.sh exited $?"; cat "$tmp/out"; exit 1; }
cat "$tmp/apt.log"
grep -q "apt-get install" "$tmp/apt.log" || { echo "FAIL: apt-get install never ran"; exit 1; }
if grep -v "DEBIAN_FRONTEND=noninteractive" "$tmp/apt.log"; then
  echo "FAIL: apt-get ran through sudo without DEBIAN_FRONTEND=noninteractive"
  exit 1
fi
echo "install-deps ok"
