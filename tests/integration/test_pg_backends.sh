#!/usr/bin/env bash
# labels: pg
#
# test_pg_backends.sh - the production storage backends against real
# servers: starts a private PostgreSQL and Redis (tests/pg/start-services.sh),
# then runs the ledger and registry unit suites and the credit property
# test on them
# (TROOP_TEST_LEDGER_URL, TROOP_TEST_REGISTRY_URL) and the PostgreSQL- and
# Redis-only tests (two coordinators, lock order, restarts).  Every test
# makes its own database or key prefix.
#
# Fails (never skips) when the servers cannot be started or the test
# programs were not built: a `pg` run that tested nothing must not pass.
set -uo pipefail

src=${TROOP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TROOP_BUILD_DIR:-$src/build}
bins=(test_ledger test_registry test_ledger_pg test_registry_redis test_credits_property)

for b in "${bins[@]}"; do
  if [[ ! -x $build/tests/$b ]]; then
    echo "FAIL: $build/tests/$b is not built (cmocka, libpq and hiredis are needed)" >&2
    exit 1
  fi
done

. "$src/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-pg
chain_services
echo "services: $DATABASE_URL $REDIS_URL"

export TROOP_TEST_LEDGER_URL=$DATABASE_URL
export TROOP_TEST_REGISTRY_URL=$REDIS_URL
export TROOP_TEST_PG_STOP="'$src/tests/pg/stop-services.sh' '$SVC_DIR' pg"
export TROOP_TEST_PG_START="'$src/tests/pg/start-services.sh' --only pg '$SVC_DIR' >/dev/null"
export TROOP_TEST_REDIS_STOP="'$src/tests/pg/stop-services.sh' '$SVC_DIR' redis"
export TROOP_TEST_REDIS_START="'$src/tests/pg/start-services.sh' --only redis '$SVC_DIR' >/dev/null"

failed=()
for b in "${bins[@]}"; do
  echo "=== $b"
  start=$SECONDS
  if "$build/tests/$b"; then
    echo "=== $b passed in $((SECONDS - start)) s"
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
echo "all pg backend tests passed"
