#!/usr/bin/env bash
# test_troop_chain.sh - the shell harness itself (troop_chain.sh): a script
# that sources it, starts a coordinator, a simulator, a worker and `troop
# up`, and exits without stopping them leaves none of them running; after
# a pass its temp dir (ledger and keys) is gone, after a chain_fail it is
# kept; chain_at_exit hooks run; it behaves the same under set -euo
# pipefail (the benchmarks).  Each case runs in a child bash.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# run_case NAME OPTS FAIL: prints "pids...", "tmp DIR", "hook FILE" lines
run_case() {
	local opts=$2 failing=$3
	bash -c "set $opts
		. '$HERE/troop_chain.sh'
		chain_init troop-chaintest
		chain_at_exit 'touch \"\$CHAIN_TMP.hook\"'
		chain_coordinator
		chain_sim a
		chain_worker w \"ollama=http://127.0.0.1:\$SIM_PORT\" --no-verify
		chain_up main \"\$COORD_URL\"
		echo \"pids \$COORD_PID \$SIM_PID \$WORKER_PID \$UP_PID\"
		echo \"tmp \$CHAIN_TMP\"
		[ $failing = 1 ] && chain_fail 'a failed check' >/dev/null
		exit 0"
}

for opts in -u -euo\ pipefail; do
	for failing in 0 1; do
		name="set $opts, failing=$failing"
		out=$(run_case "$name" "$opts" "$failing")
		pids=$(echo "$out" | sed -n 's/^pids //p')
		tmp=$(echo "$out" | sed -n 's/^tmp //p')
		[ "$(echo $pids | wc -w)" = 4 ] || { fail "$name: did not start four processes: $out"; continue; }
		for p in $pids; do
			if kill -0 "$p" 2>/dev/null; then
				fail "$name: process $p ($(tr '\0' ' ' </proc/$p/cmdline | cut -c1-60)) outlived the script"
				kill "$p"
			fi
		done
		[ -f "$tmp.hook" ] || fail "$name: the chain_at_exit hook did not run"
		rm -f "$tmp.hook"
		if [ "$failing" = 1 ]; then
			[ -f "$tmp/home-worker-w/identity.key" ] || fail "$name: temp dir not kept after a failure"
			rm -rf "$tmp"
		else
			[ ! -e "$tmp" ] || { fail "$name: $tmp left behind after a pass"; rm -rf "$tmp"; }
		fi
		echo "ok: $name"
	done
done
[ "$FAILS" -eq 0 ]
