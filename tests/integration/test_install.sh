#!/usr/bin/env bash
# test_install.sh - `make install` / `make uninstall` with DESTDIR and
# PREFIX: troop, the troop(1) man page, bash and zsh completions, the
# systemd units (pointing at PREFIX/bin/troop) and the example environment
# files land where they should; the man page and the completions name
# every command and every flag of `troop COMMAND --help` (they are made
# from those texts); uninstall removes every file it installed.
set -u
BUILD=${TROOP_BUILD_DIR:?TROOP_BUILD_DIR not set}
BUILD=$(cd "$BUILD" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
dest=$tmp/root
make -C "$src" --no-print-directory install BUILD="$BUILD" JOBS=1 DESTDIR="$dest" \
  PREFIX=/opt/troop >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make install"; exit 1; }
for f in bin/troop lib/monkey-troop/engine-sim share/man/man1/troop.1 share/bash-completion/completions/troop \
    share/zsh/site-functions/_troop lib/systemd/system/troop-coordinator.service \
    lib/systemd/system/troop-worker.service lib/systemd/user/troop-up.service \
    share/doc/monkey-troop/examples/coordinator.env share/doc/monkey-troop/examples/worker.env; do
  [ -f "$dest/opt/troop/$f" ] || fail "missing $f"
done
"$dest/opt/troop/bin/troop" --version | grep -q '^troop ' || fail "installed troop --version"
grep -q '^ExecStart=/opt/troop/bin/troop worker' "$dest/opt/troop/lib/systemd/system/troop-worker.service" ||
  fail "the worker unit does not run PREFIX/bin/troop"
man=$dest/opt/troop/share/man/man1/troop.1
bashc=$dest/opt/troop/share/bash-completion/completions/troop
bash -n "$bashc" || fail "bash completion does not parse"
cmds=$("$BUILD/troop" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on=0}')
[ -n "$cmds" ] || fail "no commands in troop --help"
for c in $cmds; do
  grep -q "^\.SH TROOP $(echo "$c" | tr a-z A-Z)\$" "$man" || fail "man page lacks $c"
  cline=$(grep "^    $c) words=" "$bashc" | tr "'" ' ')
  for flag in $("$BUILD/troop" "$c" --help | awk '/^Options:/ {on=1; next} on' |
      grep -oE '^ +(-[a-zA-Z], )?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+'); do
    grep -q -- "$(echo "$flag" | sed 's/-/\\\\-/g')" "$man" || fail "man page lacks troop $c $flag"
    [[ "$cline" == *" $flag "* ]] || fail "bash completion lacks $c $flag"
  done
done
if command -v man >/dev/null 2>&1; then
  man -l "$man" 2>/dev/null | grep -q "max-tokens" || fail "man cannot render troop.1"
fi
grep -q '^#TROOP_COORDINATOR=' "$dest/opt/troop/share/doc/monkey-troop/examples/worker.env" ||
  fail "worker.env example lacks TROOP_COORDINATOR"
# the installed troop demo finds the installed simulator
. "$(dirname "$0")/../../scripts/free-ports.sh"
base=$(free_base)
TROOP_HOME=$tmp/home timeout 120 "$dest/opt/troop/bin/troop" demo --no-wait --simulator \
  --coordinator-port "$base" --worker-port $((base + 1)) --client-port $((base + 2)) \
  >"$tmp/demo.log" 2>&1 || { cat "$tmp/demo.log"; fail "installed troop demo"; }
grep -q "It works" "$tmp/demo.log" || fail "installed troop demo served no completion"
make -C "$src" --no-print-directory uninstall BUILD="$BUILD" DESTDIR="$dest" PREFIX=/opt/troop \
  >"$tmp/make.log" 2>&1 || fail "make uninstall"
left=$(find "$dest" -type f)
[ -z "$left" ] || fail "left after uninstall: $left"
[ "$fails" -eq 0 ] && echo "install ok"
[ "$fails" -eq 0 ]
