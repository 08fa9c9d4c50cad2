#!/usr/bin/env bash
# stop-services.sh - stop the servers that tests/pg/start-services.sh
# started under DIR.
#
#   tests/pg/stop-services.sh DIR [pg|redis|all]     (default: all)
#
# pg: a fast shutdown (clients are disconnected, committed data is kept);
# redis: the server exits without saving (its data is gone).  The data
# directory stays, so start-services.sh DIR brings them back on the same
# ports; remove DIR yourself when done.  Stopping what is not running is
# not an error.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 DIR [pg|redis|all]" >&2
  exit 1
fi
dir=$1
what=${2:-all}
rc=0

stop_pg() {
  local data=$dir/pg/data bin=
  [[ -f $data/PG_VERSION ]] || return 0
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    [[ -x $d/pg_ctl ]] && { bin=$d; break; }
  done
  [[ -n $bin ]] || bin=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /usr/bin/pg_ctl)")
  local owner
  owner=$(stat -c %U "$data")
  local run=()
  [[ $(id -u) -eq 0 && $owner != root ]] && run=(runuser -u "$owner" --)
  "${run[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 0
  "${run[@]}" "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || {
    echo "stop-services: PostgreSQL did not stop" >&2; rc=1; }
}

stop_redis() {
  local pidf=$dir/redis/redis.pid pid
  [[ -f $pidf ]] || return 0
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidf"
}

case "$what" in
  pg) stop_pg ;;
  redis) stop_redis ;;
  all) stop_pg; stop_redis ;;
  *) echo "usage: $0 DIR [pg|redis|all]" >&2; exit 1 ;;
esac
exit $rc
