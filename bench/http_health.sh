#!/usr/bin/env bash
# http_health.sh - requests/s of our HTTP server's /health next to nginx's.
#
#   bench/http_health.sh [BUILD_DIR]      (default: build)
#
# The server measured is, in order of preference:
#   1. $TROOP_HEALTH_URL, if set (anything already running);
#   2. `BUILD_DIR/troop coordinator --listen 127.0.0.1:PORT --data-dir TMP`,
#      if that starts and answers /health;
#   3. a throwaway program compiled here against BUILD_DIR/libtroop_lib.a
#      that serves /health with http_server (threads = cores, quiet).
# nginx (Debian nginx-light) is always started next to it, non-daemon, with
# a private config in a temporary directory, answering /health with
# return 200 '{"status":"healthy"}', as the ceiling.  Both are loaded with
# `wrk -t2 -c64 -d5s` (WRK_ARGS overrides).  Nothing here builds the
# project; build it first (cmake --build BUILD_DIR).
set -euo pipefail

BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
WRK_ARGS=${WRK_ARGS:-"-t2 -c64 -d5s"}
read -r -a WRK <<<"$WRK_ARGS"
# the tests' harness starts and stops the processes and removes the temp
# dir; the coordinator logs at warn level, so its port is chosen here
export TROOP_BUILD_DIR=$BUILD TROOP_BIN=$BUILD/troop
. "$SRC/tests/integration/troop_chain.sh"
CHAIN_NO_BUILD=1 chain_init troop-bench
TMP=$CHAIN_TMP

die() { echo "http_health: $*" >&2; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"

# wait_up URL: until it answers 200
wait_up() {
	chain_wait_http "$1" 2>/dev/null
}

# rps URL: wrk's Requests/sec
rps() {
	local out
	out=$(wrk "${WRK[@]}" "$1")
	while IFS= read -r line; do echo "    $line"; done <<<"$out" >&2
	echo "$out" | awk '/^Requests\/sec:/ { print $2 }'
}

# ---- the server under test ---------------------------------------------------
TARGET=${TROOP_HEALTH_URL:-}
WHAT="TROOP_HEALTH_URL"
if [ -n "$TARGET" ]; then
	wait_up "$TARGET" || die "TROOP_HEALTH_URL=$TARGET does not answer 200"
fi
if [ -z "$TARGET" ] && [ -x "$BUILD/troop" ]; then
	port=$(chain_free_port)
	TROOP_LOG_LEVEL=warn chain_spawn "$TMP/coord.log" "" "$BUILD/troop" coordinator \
		--listen "127.0.0.1:$port" --data-dir "$TMP/coord"
	if wait_up "http://127.0.0.1:$port/health"; then
		TARGET="http://127.0.0.1:$port/health"
		WHAT="troop coordinator"
	else
		echo "http_health: 'troop coordinator' does not serve /health; using a test program" >&2
	fi
fi
if [ -z "$TARGET" ]; then
	[ -f "$BUILD/libtroop_lib.a" ] || die "$BUILD/libtroop_lib.a missing: build the project first"
	cat >"$TMP/health.c" <<'EOF'
/* health.c - /health on http_server, for bench/http_health.sh only. */
#include <stdio.h>
#include "http_server.h"

static void health(http_req *r, void *arg)
{
	static const char body[] = "{\"status\":\"healthy\"}";

	http_reply(r, 200, "application/json", body, sizeof(body) - 1);
}

int main(void)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .quiet = true };
	http_server *s;
	int rc;

	if (http_server_new(&s, &o) != 0 ||
	    http_server_route(s, "GET", "/health", health, NULL) != 0 ||
	    http_server_start(s) != 0)
		return 1;
	printf("%d\n", http_server_port(s));
	fflush(stdout);
	rc = http_server_run(s, 1000);
	http_server_free(s);
	return rc != 0;
}
EOF
	# shellcheck disable=SC2046
	cc -O2 -I"$SRC/src/lib" "$TMP/health.c" "$BUILD/libtroop_lib.a" \
		$(pkg-config --libs libevent libevent_pthreads jansson libsodium libcurl) \
		-lpthread -lm -o "$TMP/health" || die "cannot compile the test server"
	"$TMP/health" >"$TMP/health.port" 2>"$TMP/health.log" &
	CHAIN_PIDS+=($!)
	for _ in $(seq 1 100); do
		[ -s "$TMP/health.port" ] && break
		sleep 0.05
	done
	port=$(head -n1 "$TMP/health.port")
	[ -n "$port" ] || die "test server did not start: $(cat "$TMP/health.log")"
	TARGET="http://127.0.0.1:$port/health"
	WHAT="http_server test program"
	wait_up "$TARGET" || die "test server does not answer $TARGET"
fi

# ---- nginx -------------------------------------------------------------------
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx not found (apt-get install nginx-light)"
NPORT=$(chain_free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$NPORT;
		location = /health {
			default_type application/json;
			return 200 '{"status":"healthy"}';
		}
	}
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' 2>"$TMP/nginx/stderr" &
CHAIN_PIDS+=($!)
wait_up "http://127.0.0.1:$NPORT/health" ||
	die "nginx did not start: $(cat "$TMP/nginx/stderr" "$TMP/nginx/logs/error.log" 2>/dev/null)"

# ---- load ----------------------------------------------------------------------
echo "== $WHAT: $TARGET (wrk $WRK_ARGS)" >&2
OURS=$(rps "$TARGET")
[ -n "$OURS" ] || die "wrk gave no result for $TARGET"
echo "== nginx: http://127.0.0.1:$NPORT/health (wrk $WRK_ARGS)" >&2
THEIRS=$(rps "http://127.0.0.1:$NPORT/health")

echo "cores:  $(nproc)"
echo "troop:  $OURS req/s ($WHAT)"
echo "nginx:  $THEIRS req/s"
awk -v a="$OURS" -v b="$THEIRS" 'BEGIN { if (b > 0) printf "ratio:  %.2f (troop / nginx)\n", a / b }'
