#!/usr/bin/env bash
# install-deps.sh - install the Debian 12 packages Monkey Troop needs.
#
#   scripts/install-deps.sh [build|test|bench|deb|fresh|all]   (default: test)
#
# Idempotent: only packages that are missing are installed, and the package
# lists are refreshed only when something must be installed.  Uses sudo when
# not run as root.
set -euo pipefail

group=${1:-test}

build_pkgs=(build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev libssl-dev
  libjansson-dev libsodium-dev libsqlite3-dev libpq-dev libhiredis-dev
  libcmocka-dev)
test_pkgs=(curl iproute2 procps sqlite3 postgresql redis-server nodejs npm chromium
  python3-numpy)
bench_pkgs=(wrk nginx-light)
deb_pkgs=(debhelper dpkg-dev fakeroot)
fresh_pkgs=(debootstrap)

case "$group" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  deb)   want=("${build_pkgs[@]}" "${deb_pkgs[@]}") ;;
  fresh) want=("${build_pkgs[@]}" "${deb_pkgs[@]}" "${fresh_pkgs[@]}") ;;
  all)   want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}" clang) ;;
  *) echo "usage: $0 [build|test|bench|deb|fresh|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  # nodejs/npm may come from elsewhere (nvm, a tarball): a working binary counts
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

SUDO=
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  # sudo resets the environment: pass DEBIAN_FRONTEND through explicitly
  SUDO="sudo DEBIAN_FRONTEND=noninteractive"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# services must not start at install time (tests start their own)
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
