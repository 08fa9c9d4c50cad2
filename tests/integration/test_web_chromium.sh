#!/usr/bin/env bash
# test_web_chromium.sh - the two web pages in a real browser (issue 19,
# section 2).  Headless Chromium, driven over its DevTools protocol by
# cdp_page.mjs, opens:
#   - the coordinator's public network page at /: it loads with no console
#     error, shows the version, live nodes and models the public JSON
#     endpoints return, and a node that joins while the page is open
#     appears within one refresh (the page refreshes every second here);
#   - troop up's own page at /ui: balance, transactions and owned nodes as
#     troop up's endpoints return them, and the chat box streams an answer
#     (several chunks); the job then shows in "Jobs you ran" with its node
#     and its settled cost.
# The network page's donors (GET /leaderboard) list w1's owner, whom the
# client paid for two chats first.  A troop up with --api-key: the page
# asks for the key, then shows the balance.
# Screenshots: $TROOP_BUILD_DIR/screenshots/web-network.png,
# web-network-joined.png and web-ui.png.  Also checks that troop up's /ui
# endpoints keep the Host/Origin rules (a foreign page gets 403).
# Skips (77) when Chromium is not installed.
set -u
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || { echo "SKIP: chromium is not installed"; exit 77; }
command -v node >/dev/null || { echo "SKIP: node is not installed"; exit 77; }
# Node 20 has its WebSocket behind a flag that Node 18 does not know;
# cdp_page.mjs brings its own client where there is none
NODE_WS=
node --experimental-websocket -e 0 2>/dev/null && [ -z "${CDP_MINI_WEBSOCKET:-}" ] && NODE_WS=--experimental-websocket
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init troop-web
SHOTS=$(cd "${TROOP_BUILD_DIR:-build}" && pwd)/screenshots
mkdir -p "$SHOTS"
rm -f "$SHOTS"/web-*.png

MODEL=llama3:8b
chain_coordinator
mkdir -p "${CLIENT_HOME:-$CHAIN_TMP/home-client}"
ACCOUNT=$(chain_troop id 2>/dev/null | grep -o '[A-Za-z0-9_-]\{43\}' | head -n1)
[ -n "$ACCOUNT" ] || { echo "FAIL: no account id from troop id"; exit 1; }
chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
# two jobs for the leaderboard: the client pays w1's owner (w1 itself)
for i in 1 2; do
	chain_troop chat -m "$MODEL" "hello $i" >/dev/null 2>&1 || chain_fail "troop chat $i failed"
done
for i in $(seq 1 100); do
	curl -s "$COORD_URL/stats" | grep -q '"jobs_total":2' && break
	sleep 0.1
done

# drive STEPS (JSON) in the background; its result goes to OUT
drive() {
	node $NODE_WS "$HERE/cdp_page.mjs" "$CHROME" "$1" >"$2" 2>"$2.err"
}

# ---- the public network page -------------------------------------------------
cat >"$CHAIN_TMP/net.json" <<JSON
[
 {"open": "$COORD_URL/?refresh=1"},
 {"wait": "Number(document.body.dataset.refreshes) >= 1 && document.querySelectorAll('#nodes tr[data-node]').length >= 1"},
 {"eval": "document.getElementById('version').textContent", "as": "version"},
 {"eval": "document.getElementById('health').textContent", "as": "health"},
 {"eval": "document.getElementById('live-nodes').textContent", "as": "live"},
 {"eval": "document.getElementById('models-count').textContent", "as": "models_count"},
 {"eval": "document.getElementById('queued').textContent", "as": "queued"},
 {"eval": "[...document.querySelectorAll('#models tr[data-model]')].map(r => [r.dataset.model, r.children[1].textContent])", "as": "models"},
 {"eval": "[...document.querySelectorAll('#nodes tr[data-node]')].map(r => r.dataset.node)", "as": "nodes_before"},
 {"eval": "[...document.querySelectorAll('#leaders tr[data-owner]')].map(r => [r.dataset.owner, ...[...r.children].map(c => c.textContent)])", "as": "leaders"},
 {"screenshot": "$SHOTS/web-network.png"},
 {"touch": "$CHAIN_TMP/net-ready"},
 {"wait_file": "$CHAIN_TMP/net-go", "timeout": 60000},
 {"eval": "Date.now()", "as": "go_ms"},
 {"wait": "document.querySelector('#nodes tr[data-node=\"w2\"]') !== null", "timeout": 6000},
 {"eval": "Date.now()", "as": "seen_ms"},
 {"eval": "document.getElementById('live-nodes').textContent", "as": "live_after"},
 {"wait": "document.getElementById('jobs-per-min').textContent !== '–'", "timeout": 6000},
 {"screenshot": "$SHOTS/web-network-joined.png"}
]
JSON
drive "$CHAIN_TMP/net.json" "$CHAIN_TMP/net.out" &
NET_PID=$!
for i in $(seq 1 600); do
	[ -f "$CHAIN_TMP/net-ready" ] && break
	kill -0 "$NET_PID" 2>/dev/null || break
	sleep 0.05
done
if [ -f "$CHAIN_TMP/net-ready" ]; then
	chain_sim b
	chain_worker w2 "vllm=http://127.0.0.1:$SIM_PORT" --donate always --owner "$ACCOUNT"
	chain_wait_nodes "$MODEL" 2 >/dev/null
	touch "$CHAIN_TMP/net-go"
fi
wait "$NET_PID"
echo "network page: $(cat "$CHAIN_TMP/net.out")"
curl -s "$COORD_URL/stats" >"$CHAIN_TMP/stats.json"
curl -s "$COORD_URL/v1/models" >"$CHAIN_TMP/models.json"
curl -s "$COORD_URL/health" >"$CHAIN_TMP/health.json"
curl -s "$COORD_URL/leaderboard" >"$CHAIN_TMP/leaderboard.json"
python3 - "$CHAIN_TMP" <<'PY' || chain_fail "the network page does not show what the API returns"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/net.out"))
assert r["ok"], r.get("failed")
assert not r["errors"], r["errors"]
v = r["values"]
health = json.load(open(d + "/health.json"))
models = json.load(open(d + "/models.json"))
assert v["version"] == health["version"], (v["version"], health)
assert v["health"] == "healthy", v["health"]
assert v["live"] == "1" and v["nodes_before"] == ["w1"], v
want = sorted([m["id"], str(m["nodes"])] for m in models["data"])
assert v["models_count"] == str(len(models["data"])), v
stats = json.load(open(d + "/stats.json"))
assert v["queued"] == str(stats["queued"]), (v["queued"], stats)
assert sorted(v["models"]) == sorted([m["id"], "1"] for m in models["data"]), (v["models"], want)
assert v["live_after"] == "2", v
board = json.load(open(d + "/leaderboard.json"))["leaders"]
assert len(board) == 1 and board[0]["jobs"] == 2 and board[0]["live_nodes"] == ["w1"], board
want = [[l["account"], str(l["rank"]), l["account"][:8], ", ".join(l["live_nodes"]),
         str(l["earned"]), str(l["jobs"])] for l in board]
assert v["leaders"] == want, (v["leaders"], want)
print("ok: network page shows version %s, %s models, donor %s with %s credits, w2 appeared "
      "%d ms after it joined" % (v["version"], v["models_count"], want[0][2], want[0][4],
      v["seen_ms"] - v["go_ms"]))
PY

# bad input to the public endpoints: the JSON error shape
for q in "limit=0" "limit=101" "limit=x"; do
	body=$(curl -s -w "\n%{http_code}" "$COORD_URL/leaderboard?$q")
	echo "$body" | python3 -c 'import json,sys; t=sys.stdin.read().strip().rsplit("\n",1); e=json.loads(t[0])["error"]; assert t[1]=="400" and e["message"] and e["type"] and e["code"], t' ||
		chain_fail "GET /leaderboard?$q: $body"
done

# ---- your own page on troop up -------------------------------------------------
chain_up main "$COORD_URL"
MAIN_URL=$UP_URL
chain_troop balance --json >"$CHAIN_TMP/balance.json"
cat >"$CHAIN_TMP/ui.json" <<JSON
[
 {"open": "$UP_URL/ui?refresh=1"},
 {"wait": "Number(document.body.dataset.refreshes) >= 1 && document.querySelectorAll('#model option').length >= 1"},
 {"eval": "Object.fromEntries(['account','available','reserved','trial','pending','balance','earned'].map(k => [k, document.getElementById(k).textContent]))", "as": "before"},
 {"eval": "[...document.querySelectorAll('#transactions tr[data-tx]')].map(r => Number(r.dataset.tx))", "as": "tx_before"},
 {"eval": "[...document.querySelectorAll('#nodes tr[data-node]')].map(r => r.dataset.node)", "as": "owned"},
 {"eval": "document.getElementById('model').value = '$MODEL', document.getElementById('prompt').value = 'hello from the page', true", "as": "typed"},
 {"click": "#send"},
 {"wait": "document.body.dataset.chat === 'done' || document.body.dataset.chat === 'failed'", "timeout": 30000},
 {"eval": "document.body.dataset.chat", "as": "chat"},
 {"eval": "Number(document.body.dataset.chunks || 0)", "as": "chunks"},
 {"eval": "document.getElementById('answer').textContent", "as": "answer"},
 {"eval": "document.getElementById('chat-error').textContent", "as": "chat_error"},
 {"wait": "[...document.querySelectorAll('#jobs tr[data-job]')].some(r => /^[0-9]+$/.test(r.children[4].textContent))", "timeout": 10000},
 {"eval": "[...document.querySelectorAll('#jobs tr[data-job]')].map(r => [r.dataset.job, r.children[1].textContent, r.children[2].textContent, r.children[4].textContent])", "as": "jobs"},
 {"screenshot": "$SHOTS/web-ui.png"}
]
JSON
drive "$CHAIN_TMP/ui.json" "$CHAIN_TMP/ui.out"
echo "own page: $(cat "$CHAIN_TMP/ui.out")"
chain_troop transactions --json >"$CHAIN_TMP/tx.json"
python3 - "$CHAIN_TMP" "$ACCOUNT" <<'PY' || chain_fail "the /ui page does not show what the API returns"
import json, sys
d, account = sys.argv[1], sys.argv[2]
r = json.load(open(d + "/ui.out"))
assert r["ok"], r.get("failed")
assert not r["errors"], r["errors"]
v = r["values"]
bal = json.load(open(d + "/balance.json"))
b = v["before"]
assert b["account"] == account, (b, account)
for k, f in (("available", "available_seconds"), ("reserved", "reserved_seconds"),
             ("trial", "trial_seconds"), ("pending", "pending_seconds"), ("balance", "balance_seconds")):
    assert b[k] == str(bal[f]), (k, b[k], bal[f])
assert v["owned"] == ["w2"], v["owned"]
assert b["earned"] == "0", b   # w2 joined owned by this account: nobody else paid it yet
assert v["chat"] == "done", (v["chat"], v["chat_error"])
assert v["chunks"] >= 2 and v["answer"].strip(), (v["chunks"], v["answer"])
tx = json.load(open(d + "/tx.json"))["transactions"]
settles = {t["job_id"]: t for t in tx if t["type"] == "settle" and t["requester"] == account}
# the one job this troop up relayed: its node by name, its settled cost
assert len(v["jobs"]) == 1, v["jobs"]
job, model, node, cost = v["jobs"][0]
assert job in settles and model == "llama3:8b" and node in ("w1", "w2"), (v["jobs"], settles)
assert cost == str(settles[job]["credits"]), (v["jobs"], settles[job])
print("ok: /ui shows the balance (%s available), owned node w2, job %s on %s for %s, and the "
      "chat streamed %d chunks: %r" % (b["available"], job[:8], node, cost, v["chunks"],
      v["answer"][:60]))
PY

# with --api-key the page asks for the key, then works with it
KEY=page-test-key-0123456789abcdef
chain_up keyed "$COORD_URL" --api-key "$KEY"
cat >"$CHAIN_TMP/key.json" <<JSON
[
 {"open": "$UP_URL/ui?refresh=1"},
 {"wait": "getComputedStyle(document.getElementById('keybox')).display !== 'none'", "timeout": 5000},
 {"eval": "document.getElementById('available').textContent", "as": "locked"},
 {"eval": "document.getElementById('apikey').value = '$KEY', true", "as": "typed"},
 {"click": "#usekey"},
 {"wait": "Number(document.body.dataset.refreshes) >= 1", "timeout": 5000},
 {"eval": "document.getElementById('available').textContent", "as": "available"},
 {"eval": "getComputedStyle(document.getElementById('keybox')).display", "as": "keybox"}
]
JSON
drive "$CHAIN_TMP/key.json" "$CHAIN_TMP/key.out"
chain_troop balance --json >"$CHAIN_TMP/balance2.json"
python3 - "$CHAIN_TMP" <<'PY' || chain_fail "/ui with --api-key"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/key.out"))
assert r["ok"], r.get("failed")
# the only errors: the browser's log of the 401s before the key was given
assert all("401" in e for e in r["errors"]), r["errors"]
v = r["values"]
bal = json.load(open(d + "/balance2.json"))
assert v["locked"] == "–" and v["keybox"] == "none", v
assert v["available"] == str(bal["available_seconds"]), (v, bal)
print("ok: with --api-key the page asked for the key, then showed %s available" % v["available"])
PY
code=$(curl -s -o /dev/null -w "%{http_code}" "$UP_URL/ui/api/balance")
[ "$code" = 401 ] || chain_fail "/ui/api/balance without the key answered $code"

# the edge still guards /ui's endpoints
code=$(curl -s -o /dev/null -w "%{http_code}" -H "Origin: http://evil.example" "$MAIN_URL/ui/api/balance")
[ "$code" = 403 ] || chain_fail "a foreign Origin read /ui/api/balance ($code)"
code=$(curl -s -o /dev/null -w "%{http_code}" -H "Host: evil.example" "$MAIN_URL/ui/api/transactions")
[ "$code" = 403 ] || chain_fail "a foreign Host read /ui/api/transactions ($code)"
code=$(curl -s -o /dev/null -w "%{http_code}" -H "Origin: $MAIN_URL" "$MAIN_URL/ui/api/balance")
[ "$code" = 200 ] || chain_fail "the page's own origin got $code from /ui/api/balance"
code=$(curl -s -o /dev/null -w "%{http_code}" "$MAIN_URL/ui/api/nope")
[ "$code" = 404 ] || chain_fail "/ui/api/nope answered $code"

for f in web-network.png web-network-joined.png web-ui.png; do
	[ -s "$SHOTS/$f" ] || chain_fail "no screenshot $f"
done
echo "screenshots in $SHOTS"
[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
