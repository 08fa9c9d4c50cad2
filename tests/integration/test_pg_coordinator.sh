#!/usr/bin/env bash
# labels: pg
#
# test_pg_coordinator.sh - the coordinator's integration suites
# (test_coordinator.c, test_credits.c, test_poh.c, test_laundering.c,
# test_queue.c: two coordinators there, sharing the queue; test_reports.c;
# test_peers_pages.c; test_admin.c; test_audits.c; test_reputation.c)
# once more, with every coordinator they start on PostgreSQL and Redis
# instead of the embedded SQLite ledger and in-process registry.  Starts a private PostgreSQL and
# Redis (tests/pg/start-services.sh), makes a fresh database and a fresh
# Redis key prefix for each suite, and hands them to the suite as
# TROOP_TEST_DATABASE_URL / TROOP_TEST_REGISTRY_URL, which the harness
# turns into --database-url / --registry-url (harness_backend_args).  Every
# assertion of the suites applies unchanged; test_credits.c reads the
# conservation invariant from the PostgreSQL database.
#
# Fails (never skips) when the servers cannot be started or the suites
# were not built: a `pg` run that tested nothing must not pass.
set -uo pipefail

src=${TROOP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TROOP_BUILD_DIR:-$src/build}
export TROOP_BIN=${TROOP_BIN:-$build/troop}
suites=(itest_test_coordinator itest_test_credits itest_test_poh itest_test_laundering
  itest_test_queue itest_test_reports itest_test_peers_pages itest_test_admin
  itest_test_audits itest_test_durable
  itest_test_reputation)

for b in "${suites[@]}"; do
  if [[ ! -x $build/tests/$b ]]; then
    echo "FAIL: $build/tests/$b is not built (cmocka is needed)" >&2
    exit 1
  fi
done
command -v psql >/dev/null 2>&1 || { echo "FAIL: psql not found (package postgresql-client)" >&2; exit 1; }

. "$src/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-pgc
chain_services
base_db=$DATABASE_URL
base_redis=$REDIS_URL
# the suites' coordinators get the servers only through the flags
unset DATABASE_URL REDIS_URL TROOP_DATABASE_URL TROOP_REDIS_URL
echo "services: $base_db $base_redis"

failed=()
for b in "${suites[@]}"; do
  db=t_${b#itest_test_}_$$
  if ! psql -q -v ON_ERROR_STOP=1 "$base_db" -c "CREATE DATABASE $db" >/dev/null; then
    echo "FAIL: could not create database $db" >&2
    exit 1
  fi
  # a short lock_timeout: test_poh holds a row lock to make a write fail
  export TROOP_TEST_DATABASE_URL="${base_db%/*}/$db?options=-c%20lock_timeout%3D500"
  export TROOP_TEST_REGISTRY_URL="$base_redis/0?prefix=$db:"
  echo "=== $b on $TROOP_TEST_DATABASE_URL and $TROOP_TEST_REGISTRY_URL"
  start=$SECONDS
  if "$build/tests/$b"; then
    # the suite really ran on these servers: its rows (accounts, or nodes
    # for a suite that only registers nodes) and keys are there
    accounts=$(psql -qtA "${base_db%/*}/$db" -c \
      "SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM nodes)")
    keys=$(redis-cli -u "$base_redis" --scan --pattern "$db:*" 2>/dev/null | wc -l)
    if [[ ${accounts:-0} -gt 0 && $keys -gt 0 ]]; then
      echo "=== $b passed in $((SECONDS - start)) s ($accounts accounts and nodes in PostgreSQL, $keys Redis keys)"
    else
      echo "=== $b FAILED: it left no accounts or nodes ($accounts) or no Redis keys ($keys): it did not use the servers"
      failed+=("$b")
    fi
  else
    echo "=== $b FAILED"
    failed+=("$b")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAIL: ${failed[*]}" >&2
  chain_services_logs
  exit 1
fi
echo "all coordinator suites passed on PostgreSQL and Redis"
