#!/usr/bin/env bash
# test_owner_dash.sh - an account id that begins with '-' is a value, not an
# option.  Account ids are base64url, so one in 64 begins with '-'; `troop
# worker --owner <such an id>` used to stop at once with "--owner: missing
# value (ACCOUNT)" (test_web_chromium failed that way whenever its fresh
# account drew one).  Here a worker starts with such an owner, written as a
# separate word, and the coordinator lists the node under that owner; an
# option that follows --owner is still refused as a missing value.
set -u
. "$(dirname "$0")/troop_chain.sh"
chain_init

OWNER=-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA   # 43 characters: 32 bytes
MODEL=llama3:8b
chain_coordinator
chain_sim a
chain_worker a "vllm=http://127.0.0.1:$SIM_PORT" --donate always --owner "$OWNER"
if chain_wait_nodes "$MODEL" 1; then
	got=$(curl -s "$COORD_URL/peers?model=$MODEL" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0]["owner"])')
	[ "$got" = "$OWNER" ] && echo "ok: the node is listed under owner $OWNER" ||
		chain_fail "the node's owner is '$got', not $OWNER"
else
	chain_fail "the worker with --owner $OWNER did not come up: $(head -c 300 \
		"$CHAIN_TMP/worker-a.log")"
fi

out=$("$TROOP" worker --owner --donate always 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q -- "--owner: missing value (ACCOUNT)"; then
	echo "ok: --owner followed by an option: $(printf '%s' "$out" | head -n1)"
else
	chain_fail "--owner --donate: exit $rc, $out"
fi
[ "$CHAIN_FAILS" = 0 ]
