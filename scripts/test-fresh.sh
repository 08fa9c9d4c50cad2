#!/usr/bin/env bash
# test-fresh.sh - what `make test-fresh` runs: the first hour of a new user,
# on fresh Debian 12 roots made with debootstrap (needs root, or sudo).
#
#   1. source: a minimal root (minbase + git, make, ca-certificates, sudo),
#      this repository cloned into it, and the README's two commands run
#      there: `make demo` (one completion served, then it stops) and
#      `make test`.
#   2. package: `make deb` here, then in another fresh root the .deb is
#      installed with apt, `troop --version` and `troop demo` run, and the
#      package is purged (no file, user or state directory left).
#
#   scripts/test-fresh.sh [source|package|all]     (default: all)
#
# Each root is bind-mounted onto itself (so that `ip netns` works inside
# it), with /proc, /sys and /dev, the host's CA certificates, resolv.conf
# and apt proxy settings copied in; everything runs in a private mount
# namespace, so no mount outlives the script.  The debootstrap download is
# cached, keyed by suite, in $TROOP_FRESH_CACHE (default
# /var/cache/monkey-troop): later runs unpack it instead of downloading.
# Prints one line per step and a last line "test-fresh: N passed, N failed";
# logs are kept in $TROOP_FRESH_DIR (default: a new directory under /tmp).
set -uo pipefail
what=${1:-all}
suite=${TROOP_FRESH_SUITE:-bookworm}
mirror=${TROOP_FRESH_MIRROR:-http://deb.debian.org/debian}
cache=${TROOP_FRESH_CACHE:-/var/cache/monkey-troop}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=TROOP_FRESH_SUITE,TROOP_FRESH_MIRROR,TROOP_FRESH_CACHE,TROOP_FRESH_DIR,TROOP_LLAMA_CACHE,BUILD,http_proxy,https_proxy \
    DEBIAN_FRONTEND=noninteractive "$0" "$@"
fi
if [ -z "${TROOP_FRESH_NS:-}" ]; then
  TROOP_FRESH_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
work=${TROOP_FRESH_DIR:-$(mktemp -d /tmp/troop-fresh-XXXXXX)}
mkdir -p "$work" "$cache"
passed=0
failed=0
roots=()
cleanup() {
  local r
  for r in "${roots[@]}"; do
    umount -R "$r" 2>/dev/null
    rm -rf "$r"
  done
}
trap cleanup EXIT

# step NAME LOG CMD...: one line for the step, its output in LOG
step() {
  local name=$1 log=$2 t0=$SECONDS
  shift 2
  printf '%-52s' "$name ..."
  if "$@" >"$log" 2>&1; then
    echo " passed ($((SECONDS - t0)) s)"
    passed=$((passed + 1))
    return 0
  fi
  echo " FAILED ($((SECONDS - t0)) s); last lines of $log:"
  tail -n 25 "$log" | sed 's/^/    /'
  failed=$((failed + 1))
  return 1
}

tarball=$cache/debootstrap-$suite-$(dpkg --print-architecture).tgz
fetch_tarball() {
  [ -s "$tarball" ] && return 0
  local tmp
  tmp=$(mktemp -d "$work/mk-XXXXXX")
  debootstrap --variant=minbase --include=git,make,ca-certificates,sudo \
    --make-tarball="$tarball.part" "$suite" "$tmp" "$mirror" && mv "$tarball.part" "$tarball"
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

# new_root DIR: a fresh root from the cached tarball, mounted for use
new_root() {
  local r=$1
  roots+=("$r")
  debootstrap --variant=minbase --include=git,make,ca-certificates,sudo \
    --unpack-tarball="$tarball" "$suite" "$r" "$mirror" || return 1
  mount --bind "$r" "$r"
  mount -t proc proc "$r/proc"
  mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"
  mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"
  mount -t tmpfs tmpfs "$r/run"
  mkdir -p "$r/run/netns" "$r/run/lock"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  cp -a /etc/ssl/certs/. "$r/etc/ssl/certs/" 2>/dev/null
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$r/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/"
  fi
  # apt proxy settings, wherever the host keeps them
  grep -rlis 'proxy' /etc/apt/apt.conf /etc/apt/apt.conf.d 2>/dev/null |
    while read -r f; do cp "$f" "$r/etc/apt/apt.conf.d/"; done
  return 0
}

# in_root DIR CMD: run a shell command in the root, as root, with a clean
# environment (plus proxy variables)
in_root() {
  local r=$1
  shift
  env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 ${http_proxy:+http_proxy=$http_proxy} \
    ${https_proxy:+https_proxy=$https_proxy} chroot "$r" /bin/bash -c "$*"
}

# footprint DIR: "N packages, N MB" of a root
footprint() {
  echo "$(chroot "$1" dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed') packages, $(du -smx "$1" | cut -f1) MB"
}

. "$(dirname "$0")/free-ports.sh"

step "debootstrap $suite (cached in $cache)" "$work/debootstrap.log" fetch_tarball || {
  echo "test-fresh: $passed passed, $failed failed"; exit 1; }

if [ "$what" = all ] || [ "$what" = source ]; then
  r=$work/root-source
  if step "fresh root for the README's commands" "$work/root-source.log" new_root "$r"; then
    git clone -q "$src" "$r/root/monkey-troop"
    echo "    fresh root: $(footprint "$r")"
    base=$(free_base)
    step "make demo (a completion served)" "$work/make-demo.log" in_root "$r" \
      "cd /root/monkey-troop && make demo DEMO_FLAGS='--no-wait --coordinator-port $base --worker-port $((base + 1)) --client-port $((base + 2))' | tee /tmp/demo.out && grep -q 'It works' /tmp/demo.out"
    echo "    after make demo: $(footprint "$r")"
    # llama.cpp's llama-server (the engine tests) is built once per machine,
    # about 20 minutes on 2 cores, and cached outside the clone: a copy of
    # the host's cache spares the root a second build (CI's first stage,
    # `make test` on the host, made it)
    host_home=$HOME
    [ -n "${SUDO_USER:-}" ] && host_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    llama_cache=${TROOP_LLAMA_CACHE:-$host_home/.cache/monkey-troop}
    if ls "$llama_cache"/llama.cpp-*/bin/llama-server >/dev/null 2>&1; then
      mkdir -p "$r/root/.cache"
      cp -a "$llama_cache" "$r/root/.cache/monkey-troop"
      echo "    llama-server: the host's build copied in from $llama_cache"
    fi
    if ! step "make test" "$work/make-test.log" in_root "$r" "cd /root/monkey-troop && make test"; then
      # the summary above names the failed tests; their own FAIL lines
      # (shell tests) and cmocka's ERROR and LINE lines say why
      grep -E '^(FAIL|SKIP)|: FAIL|^not ok|^\[  (ERROR|FAILED) *\]|^\[   LINE   \]|^ERROR:|error: Failure' \
        "$work/make-test.log" | head -n 60 | sed 's/^/    why: /'
    fi
    grep -E "tests passed|tests failed" "$work/make-test.log" | tail -1 | sed 's/^/    /'
    echo "    after make test: $(footprint "$r")"
    # /proc is the host's: count only processes whose root is this one
    # (one name per pgrep: it matches nothing for a pattern over 15 characters)
    for p in $(pgrep -x postgres; pgrep -x redis-server); do
      [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$r" ] &&
        echo "    left running: $(cat "/proc/$p/comm" 2>/dev/null) ($p)"
    done
  fi
fi

if [ "$what" = all ] || [ "$what" = package ]; then
  step "make deb" "$work/make-deb.log" make -C "$src" --no-print-directory deb BUILD="$build"
  deb=$(ls "$src/$build"/deb/monkey-troop_*.deb 2>/dev/null | head -1)
  r=$work/root-package
  if [ -n "$deb" ] && step "fresh root for the package" "$work/root-package.log" new_root "$r"; then
    cp "$deb" "$r/tmp/"
    step "apt-get install ./$(basename "$deb")" "$work/deb-install.log" in_root "$r" \
      "apt-get update -qq && apt-get install -y -qq /tmp/$(basename "$deb") && id troop && test -d /var/lib/troop && test \$(stat -c %a /var/lib/troop) = 700"
    step "troop --version" "$work/deb-version.log" in_root "$r" "troop --version"
    base=$(free_base)
    step "troop demo (a completion served)" "$work/deb-demo.log" in_root "$r" \
      "troop demo --no-wait --simulator --coordinator-port $base --worker-port $((base + 1)) --client-port $((base + 2)) | tee /tmp/demo.out && grep -q 'It works' /tmp/demo.out"
    step "apt-get purge monkey-troop (nothing left)" "$work/deb-purge.log" in_root "$r" \
      "apt-get purge -y -qq monkey-troop && ! test -e /usr/bin/troop && ! test -e /usr/lib/monkey-troop && ! test -e /var/lib/troop && ! test -e /etc/troop && ! id troop 2>/dev/null && ! dpkg -s monkey-troop 2>/dev/null"
  fi
fi

echo "test-fresh: $passed passed, $failed failed (logs in $work)"
[ "$failed" -eq 0 ]
