#!/bin/bash
# test_troop_id.sh - `troop id` through the real binary: first use creates
# a 0600 key in a 0700 directory and says so, later uses print the same id,
# --json, --help, bad flags (exit 2), and a key others can read (exit 1).
set -u
bin=${TROOP_BIN:-build/troop}
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TROOP_HOME=$tmp/home/troop
key=$TROOP_HOME/identity.key
fail() { echo "FAIL: $*"; exit 1; }

id1=$("$bin" id 2>"$tmp/err") || fail "first run exited $?"
grep -q "created a new identity at $key" "$tmp/err" || fail "no 'created' message: $(cat "$tmp/err")"
[[ $id1 =~ ^[A-Za-z0-9_-]{43}$ ]] || fail "not an account id: '$id1'"
[ "$(stat -c %a "$key")" = 600 ] || fail "key mode $(stat -c %a "$key")"
[ "$(stat -c %a "$TROOP_HOME")" = 700 ] || fail "dir mode $(stat -c %a "$TROOP_HOME")"

id2=$("$bin" id 2>"$tmp/err") || fail "second run exited $?"
[ "$id1" = "$id2" ] || fail "id changed: $id1 -> $id2"
[ ! -s "$tmp/err" ] || fail "second run wrote to stderr: $(cat "$tmp/err")"

json=$("$bin" id --json) || fail "--json exited $?"
[ "$json" = "{\"account_id\":\"$id1\",\"public_key_path\":\"$key\"}" ] || fail "json: $json"

"$bin" id --help | grep -q "usage: troop id" || fail "--help"
"$bin" id --nope >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] || fail "unknown flag exited $rc"
grep -q "usage: troop id" "$tmp/err" || fail "no usage line on stderr"
[ ! -s "$tmp/out" ] || fail "unknown flag wrote to stdout"

chmod 644 "$key"
"$bin" id >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] || fail "readable key exited $rc"
grep -q "chmod 600 $key" "$tmp/err" || fail "no fix in message: $(cat "$tmp/err")"
echo "ok"
