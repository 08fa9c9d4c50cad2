#!/usr/bin/env bash
# test_up_chromium.sh - a real browser against `troop up` (issue 16, item
# 1).  Headless Chromium opens a page served from another origin
# (http://127.0.0.1:PAGE) that calls fetch() on the proxy the way a hostile
# page would: a "simple" text/plain POST (no preflight), the same with
# mode "no-cors", a JSON POST and a GET of /v1/models.  None of them may
# be charged or read.  A second proxy started with --allow-origin for that
# page must then work from the same page (preflight, CORS headers).
# Skips (77) when Chromium is not installed.
set -u
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || { echo "SKIP: chromium is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
HERE=$(dirname "$0")
. "$HERE/troop_chain.sh"
chain_init

MODEL=llama3:8b
chain_coordinator
chain_sim a
chain_worker w1 "vllm=http://127.0.0.1:$SIM_PORT" --donate always
chain_wait_nodes "$MODEL" 1
chain_up main "$COORD_URL"
MAIN_PORT=$UP_PORT

# the page's server: serves page.html and writes what the page POSTs to
# /result into result-<name>.json
mkdir -p "$CHAIN_TMP/www"
cat >"$CHAIN_TMP/www/serve.py" <<'PY'
import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        name = self.path.rsplit("/", 1)[-1]
        with open("result-%s.json.tmp" % name, "wb") as f:
            f.write(data)
        os.rename("result-%s.json.tmp" % name, "result-%s.json" % name)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("port=%d" % s.server_address[1], flush=True)
s.serve_forever()
PY
(cd "$CHAIN_TMP/www" && exec python3 serve.py) >"$CHAIN_TMP/www.log" 2>&1 &
CHAIN_PIDS+=($!)
for i in $(seq 1 200); do grep -q port= "$CHAIN_TMP/www.log" && break; sleep 0.05; done
PAGE_PORT=$(sed -n 's/port=//p' "$CHAIN_TMP/www.log")
[ -n "$PAGE_PORT" ] || { echo "FAIL: the page server did not start"; exit 1; }
PAGE_ORIGIN=http://127.0.0.1:$PAGE_PORT

cat >"$CHAIN_TMP/www/page.html" <<'HTML'
<!doctype html><html><body><pre id="out">running</pre><script>
const q = new URLSearchParams(location.search);
const up = "http://127.0.0.1:" + q.get("up"), name = q.get("name");
const body = JSON.stringify({model: "llama3:8b", max_tokens: 4,
  messages: [{role: "user", content: "from a web page"}]});
async function attempt(label, path, opts) {
  try {
    const r = await fetch(up + path, opts);
    if (r.type === "opaque") return [label, "opaque"];
    return [label, String(r.status)];
  } catch (e) {
    return [label, "blocked"];
  }
}
(async () => {
  const res = {};
  for (const [k, v] of [
    await attempt("text_plain", "/v1/chat/completions",
      {method: "POST", headers: {"Content-Type": "text/plain"}, body}),
    await attempt("no_cors", "/v1/chat/completions",
      {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
    await attempt("json", "/v1/chat/completions",
      {method: "POST", headers: {"Content-Type": "application/json"}, body}),
    await attempt("models", "/v1/models", {}),
  ]) res[k] = v;
  document.getElementById("out").textContent = JSON.stringify(res);
  await fetch("/result/" + name, {method: "POST", body: JSON.stringify(res)});
})();
</script></body></html>
HTML

# browse PORT NAME: open the page with troop up at PORT; wait for its result
browse() {
	local port=$1 name=$2 i
	rm -f "$CHAIN_TMP/www/result-$name.json"
	"$CHROME" --headless --no-sandbox --disable-gpu --disable-background-networking \
		--disable-component-update --disable-sync --no-first-run \
		--user-data-dir="$(mktemp -d "$CHAIN_TMP/chrome-XXXXXX")" \
		"$PAGE_ORIGIN/page.html?up=$port&name=$name" >"$CHAIN_TMP/chrome-$name.log" 2>&1 &
	local cpid=$!
	for i in $(seq 1 600); do
		[ -f "$CHAIN_TMP/www/result-$name.json" ] && break
		sleep 0.05
	done
	kill "$cpid" 2>/dev/null
	wait "$cpid" 2>/dev/null
	[ -f "$CHAIN_TMP/www/result-$name.json" ] || {
		echo "FAIL: the page reported nothing ($name)"; tail -5 "$CHAIN_TMP/chrome-$name.log"
		return 1
	}
	cat "$CHAIN_TMP/www/result-$name.json"
	echo
}
count_tx() {
	chain_troop transactions --json 2>/dev/null | python3 -c \
		'import json,sys; d=json.load(sys.stdin); t=d.get("transactions", d) if isinstance(d, dict) else d; print(len(t))'
}

before=$(count_tx)
[ -n "$before" ] || chain_fail "cannot count the transactions"
res=$(browse "$MAIN_PORT" hostile) || exit 1
echo "hostile page: $res"
after=$(count_tx)
[ "$before" = "$after" ] || chain_fail "the page was charged: $before -> $after transactions"
python3 - "$res" <<'PY' || chain_fail "the hostile page got through"
import json, sys
r = json.loads(sys.argv[1])
# the page may not read anything: every fetch is blocked or opaque
bad = {k: v for k, v in r.items() if v not in ("blocked", "opaque")}
assert not bad, bad
PY
# and troop up refused them all (the preflighted JSON POST never came)
n403=$(grep -c 'path=/v1/chat/completions status=403' "$CHAIN_TMP/up-main.log")
n200=$(grep -c 'path=/v1/chat/completions status=200' "$CHAIN_TMP/up-main.log")
echo "troop up: $n403 completions refused 403, $n200 answered 200"
[ "$n403" -ge 2 ] || chain_fail "troop up did not refuse the simple POSTs ($n403 x 403)"
[ "$n200" = 0 ] || chain_fail "troop up answered $n200 completions to the page"
grep -q 'path=/v1/models status=403' "$CHAIN_TMP/up-main.log" ||
	chain_fail "GET /v1/models from the page was not refused"

chain_up allowed "$COORD_URL" --allow-origin "$PAGE_ORIGIN"
res=$(browse "$UP_PORT" allowed) || exit 1
echo "allowed page: $res"
python3 - "$res" <<'PY' || chain_fail "the allowed page did not work"
import json, sys
r = json.loads(sys.argv[1])
assert r["json"] == "200", r          # preflight + CORS
assert r["models"] == "200", r
assert r["text_plain"] == "415", r     # readable: the origin is allowed
PY

[ "$CHAIN_FAILS" = 0 ] || exit 1
echo "PASS"
