#!/usr/bin/env bash
# start-services.sh - start a private PostgreSQL 15 and a private Redis for
# tests of the production storage backends (and for anything else that
# wants throw-away servers: multi-coordinator tests, benchmarks).
#
#   tests/pg/start-services.sh [--only pg|redis] DIR
#
# Everything lives under DIR (created if missing): the database cluster,
# sockets, logs, and the ports chosen.  Both servers listen on 127.0.0.1
# only, on free ports; PostgreSQL's unix socket is in DIR/pg.  Running the
# script again on the same DIR starts whatever is stopped, on the same
# ports and with the same data (a restart; nothing is re-initialised).
# Redis keeps nothing on disk (--save '' --appendonly no), so a restart
# empties it, like a real restart without persistence.
#
# On success it prints shell assignments for eval:
#   export DATABASE_URL=postgresql://troop@127.0.0.1:PORT/postgres
#   export REDIS_URL=redis://127.0.0.1:PORT
#   export TROOP_SERVICES_DIR=DIR
# and exits 0; otherwise it says why on stderr and exits 1 (missing
# binaries included).  Stop with tests/pg/stop-services.sh DIR.
#
# PostgreSQL refuses to run as root: as root the cluster is created and
# run as the `postgres` user (or `nobody` when there is none).  The test
# cluster runs with fsync=off unless TROOP_PG_FSYNC=on.
set -euo pipefail

only=all
if [[ ${1:-} == --only ]]; then
  only=${2:-}
  shift 2 || true
fi
case "$only" in all|pg|redis) ;; *) echo "start-services: --only pg|redis" >&2; exit 1 ;; esac
if [[ $# -ne 1 ]]; then
  echo "usage: $0 [--only pg|redis] DIR" >&2
  exit 1
fi
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

die() { echo "start-services: $*" >&2; exit 1; }

# A port nobody listens on.  The start below retries on a lost race.
free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# ---- PostgreSQL -----------------------------------------------------------------

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  return 1
}

# Run a command as the cluster's owner.
as_pg() {
  if [[ -n ${pg_user:-} ]]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

start_pg() {
  local bin
  bin=$(pg_bindir) || die "PostgreSQL server binaries (initdb, pg_ctl) not found: install the \
'postgresql' package (scripts/install-deps.sh test)"
  pg_user=
  if [[ $(id -u) -eq 0 ]]; then
    if getent passwd postgres >/dev/null; then pg_user=postgres; else pg_user=nobody; fi
    command -v runuser >/dev/null 2>&1 || die "running as root needs runuser to start PostgreSQL"
    chmod a+rx "$dir"
  fi
  local pg=$dir/pg data=$dir/pg/data port
  mkdir -p "$pg"
  if [[ -n $pg_user ]]; then
    chown "$pg_user" "$pg"
    as_pg test -w "$pg" || die "user $pg_user cannot reach $pg (a parent directory is \
closed to it): give a DIR under /tmp"
  fi
  if [[ ! -f $data/PG_VERSION ]]; then
    as_pg "$bin/initdb" -D "$data" -U troop -A trust -E UTF8 --locale=C -N \
      >"$pg/initdb.log" 2>&1 || die "initdb failed, see $pg/initdb.log: $(tail -3 "$pg/initdb.log")"
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return 0  # already running
  fi
  local tries=1
  [[ -f $pg/port ]] || tries=5
  for _ in $(seq 1 $tries); do
    if [[ -f $pg/port ]]; then port=$(cat "$pg/port"); else port=$(free_port) || die "no free port"; fi
    # settings of this private cluster (rewritten on every start: the port may change)
    cat >"$pg/troop.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pg'
max_connections = 300
fsync = ${TROOP_PG_FSYNC:-off}
full_page_writes = ${TROOP_PG_FSYNC:-off}
log_min_messages = warning
log_min_error_statement = panic
CONF
    [[ -n $pg_user ]] && chown "$pg_user" "$pg/troop.conf"
    grep -q "^include '$pg/troop.conf'" "$data/postgresql.conf" ||
      as_pg sh -c "echo \"include '$pg/troop.conf'\" >> '$data/postgresql.conf'"
    if as_pg "$bin/pg_ctl" -D "$data" -l "$pg/server.log" -w -t 60 start >/dev/null 2>&1; then
      echo "$port" >"$pg/port"
      return 0
    fi
    [[ -f $pg/port ]] && break
  done
  die "PostgreSQL did not start, see $pg/server.log: $(tail -3 "$pg/server.log" 2>/dev/null)"
}

# ---- Redis ------------------------------------------------------------------------

redis_ping() {
  local port=$1
  if command -v redis-cli >/dev/null 2>&1; then
    [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 &&
      IFS= read -r -t 2 line <&3 && [[ $line == +PONG* ]]) 2>/dev/null
  fi
}

start_redis() {
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found: install the \
'redis-server' package (scripts/install-deps.sh test)"
  local rd=$dir/redis port
  mkdir -p "$rd"
  if [[ -f $rd/port && -f $rd/redis.pid ]] && kill -0 "$(cat "$rd/redis.pid")" 2>/dev/null &&
    redis_ping "$(cat "$rd/port")"; then
    return 0  # already running
  fi
  local tries=1
  [[ -f $rd/port ]] || tries=5
  for _ in $(seq 1 $tries); do
    if [[ -f $rd/port ]]; then port=$(cat "$rd/port"); else port=$(free_port) || die "no free port"; fi
    rm -f "$rd/redis.pid"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --pidfile "$rd/redis.pid" --logfile "$rd/server.log" --dir "$rd" \
      >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
      if redis_ping "$port"; then
        echo "$port" >"$rd/port"
        return 0
      fi
      sleep 0.1
    done
    [[ -f $rd/redis.pid ]] && kill "$(cat "$rd/redis.pid")" 2>/dev/null || true
    [[ -f $rd/port ]] && break
  done
  die "redis-server did not start, see $rd/server.log: $(tail -3 "$rd/server.log" 2>/dev/null)"
}

[[ $only == redis ]] || start_pg
[[ $only == pg ]] || start_redis

[[ -f $dir/pg/port ]] && echo "export DATABASE_URL=postgresql://troop@127.0.0.1:$(cat "$dir/pg/port")/postgres"
[[ -f $dir/redis/port ]] && echo "export REDIS_URL=redis://127.0.0.1:$(cat "$dir/redis/port")"
echo "export TROOP_SERVICES_DIR=$dir"
