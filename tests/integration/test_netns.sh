#!/usr/bin/env bash
# labels: netns
# test_netns.sh - the whole troop across hosts: a coordinator, two workers
# and a client, each in its own network namespace, joined by veth pairs to
# a bridge in a hub namespace.  Each worker's link is named tailscale0 and
# carries an address in 100.64.0.0/10, a stand-in for the tailnet; the
# worker must find that address itself (no --advertise) and its engine
# simulator on the engine's default port (no --engine).
#   - a client request reaches a worker at its tailnet address;
#   - credits settle: the requester pays, the serving node earns;
#   - a worker's namespace is killed and the client fails over to the
#     other worker.
# Needs root (ip netns); elsewhere it is skipped (exit 77) with a message.
set -u
BIN=${TROOP_BIN:?TROOP_BIN not set}
SIM=${TROOP_BUILD_DIR:?}/engine-sim
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
	echo "SKIP: network namespaces need root and iproute2"; exit 77
fi
if ! ip netns add "troop-probe-$$" 2>/dev/null; then
	echo "SKIP: this machine cannot create network namespaces"; exit 77
fi
ip netns del "troop-probe-$$"

P="t$$"            # namespace prefix, unique per run
HUB="$P-hub"
. "$(dirname "$0")/troop_chain.sh"
chain_init troop-netns
tmp=$CHAIN_TMP
fail() {
	chain_fail "$*"
	for f in "$tmp"/*.log; do echo "== $f"; tail -n 25 "$f"; done
	exit 1
}
chain_at_exit 'for ns in coord w1 w2 client; do ip netns del "$P-$ns" 2>/dev/null; done
	ip netns del "$HUB" 2>/dev/null'

ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
# host NAME ADDR IFNAME: a namespace joined to the bridge
host() {
	local ns="$P-$1"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "$P$1h" type veth peer name "$P$1x"
	ip link set "$P$1h" netns "$HUB"
	ip link set "$P$1x" netns "$ns"
	ip -n "$ns" link set "$P$1x" name "$3"
	ip -n "$ns" addr add "$2/10" dev "$3"
	ip -n "$ns" link set "$3" up
	ip -n "$HUB" link set "$P$1h" master br0
	ip -n "$HUB" link set "$P$1h" up
}
host coord 100.64.0.1 eth0
host w1 100.64.0.11 tailscale0
host w2 100.64.0.12 tailscale0
host client 100.64.0.20 eth0
COORD=http://100.64.0.1:8420

# bg NS NAME CMD...: run CMD in namespace NS with its log in $tmp/NAME.log
# (and TROOP_HOME=$tmp/home-NAME for a troop command)
bg() {
	local ns="$P-$1" name=$2 home=
	shift 2
	[ "$1" = "$BIN" ] && home=$tmp/home-$name
	CHAIN_WRAP="ip netns exec $ns" chain_spawn "$tmp/$name.log" "$home" "$@"
	LAST=$CHAIN_PID
}
wait_log() { # wait_log FILE PATTERN
	for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# the coordinator on 0.0.0.0:8420 of its host (the port the workers are told)
CHAIN_WRAP="ip netns exec $P-coord" chain_coordinator --listen 0.0.0.0:8420 --node-ttl 6
for w in w1 w2; do
	bg $w sim-$w "$SIM" --listen 127.0.0.1:11434 --tokens-per-second 50
	wait_log "$tmp/sim-$w.log" "listening on" || fail "simulator in $w did not start"
	bg $w $w "$BIN" worker --coordinator "$COORD" --listen 0.0.0.0:8421 --donate always
	eval "PID_$w=\$LAST"
	wait_log "$tmp/$w.log" worker_started || fail "worker $w did not start"
done
# no ticket fetched ahead: the balances below hold nothing in reserve
bg client client "$BIN" up --coordinator "$COORD" --listen 127.0.0.1:9000 --prefetch-idle 0 \
	--first-byte-timeout 5
wait_log "$tmp/client.log" client_started || fail "troop up did not start"

inclient() { ip netns exec "$P-client" env TROOP_HOME="$tmp/home-client" "$@"; }

# both workers registered with their own tailnet addresses
for _ in $(seq 1 100); do
	n=$(inclient curl -s "$COORD/peers?model=llama3:8b" | python3 -c \
		'import json,sys; print(" ".join(sorted(n["tailscale_ip"] for n in json.load(sys.stdin)["nodes"])))' 2>/dev/null)
	[ "$n" = "100.64.0.11 100.64.0.12" ] && break
	sleep 0.1
done
[ "$n" = "100.64.0.11 100.64.0.12" ] || fail "workers did not register at their tailnet addresses (got '$n')"
echo "ok: workers found their tailnet addresses: $n"

chat() { # one streamed completion through troop up; prints the text
	inclient curl -s -N --max-time 30 http://127.0.0.1:9000/v1/chat/completions \
		-H 'Content-Type: application/json' \
		-d '{"model":"llama3:8b","stream":true,"max_tokens":12,"messages":[{"role":"user","content":"across hosts"}]}' |
	python3 -c '
import json, sys
text, done = "", False
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("data: "): continue
    d = line[6:]
    if d == "[DONE]": done = True; continue
    j = json.loads(d)
    if "error" in j: sys.exit("error event: " + d)
    for c in j.get("choices", []):
        text += (c.get("delta") or {}).get("content") or ""
if not done or not text: sys.exit("incomplete stream")
print(text)'
}
text=$(chat) || fail "a request through troop up failed"
echo "ok: completion across namespaces: $text"

# which worker served it: its simulator counted a chat request
served=""
for w in w1 w2; do
	c=$(ip netns exec "$P-$w" curl -s http://127.0.0.1:11434/sim/stats |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["chat_requests"])')
	[ "$c" -gt 0 ] && served=$w
done
[ -n "$served" ] || fail "no worker's engine saw the request"
echo "ok: served by $served"

# credits settle: the requester's reservation closes with a charge, the
# serving node's account earns it
for _ in $(seq 1 100); do
	bal=$(inclient "$BIN" balance --json --coordinator "$COORD")
	res=$(echo "$bal" | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["reserved_seconds"], b["balance_seconds"])')
	set -- $res
	[ "$1" = 0 ] && [ "$2" -lt 3600 ] && break
	sleep 0.1
done
[ "$1" = 0 ] && [ "$2" -lt 3600 ] || fail "the job did not settle (reserved $1, balance $2)"
paid=$((3600 - $2))
# paid from the requester's trial (starter) credits: the node's earnings
# are pending until it is established (docs/CREDITS.md)
earned=$(ip netns exec "$P-$served" env TROOP_HOME="$tmp/home-$served" "$BIN" balance --json \
	--coordinator "$COORD" | python3 -c 'import json,sys; b=json.load(sys.stdin)
print(b["balance_seconds"] + b["pending_seconds"])')
# the node's account was created by its earnings: no starter grant
[ "$earned" = "$paid" ] || fail "requester paid $paid but the node earned $earned"
echo "ok: credits settled: paid $paid, earned $earned"

# kill a worker's whole host (its processes and its namespace): the
# coordinator still lists it until its TTL, so some authorizations name it
# and troop up must fail over to the other one
victim=w1; other=w2
eval "vpid=\$PID_$victim"
kill -9 "$vpid"
ip netns pids "$P-$victim" | xargs -r kill -9
ip netns del "$P-$victim"
n=0
while [ $n -lt 12 ]; do
	n=$((n + 1))
	text=$(chat) || fail "request $n after killing $victim failed"
	grep -q "failover" "$tmp/client.log" && break
done
grep -q "failover" "$tmp/client.log" || fail "no request was routed to the dead worker in $n tries"
c=$(ip netns exec "$P-$other" curl -s http://127.0.0.1:11434/sim/stats |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["chat_requests"])')
[ "$c" -ge "$n" ] || fail "the surviving worker served $c requests of $n"
echo "ok: failover to $other after $victim's host died ($n requests, all served)"
grep "failover" "$tmp/client.log" | head -1
echo "netns: all checks passed"
