# llama_env.sh - the real engine for the `engine` tests, sourced after
# troop_chain.sh (needs HERE and ROOT): llama.cpp's `llama-server` built
# from source on a machine's first run (scripts/build-llama-server.sh; the
# binary is cached outside the clone) and a tiny random-weight model made
# next to it (scripts/make-tiny-gguf.py).  Exits 77 (skipped) only when the
# engine cannot be built here.  After sourcing: LLAMA_SERVER, LLAMA_SRC,
# MODEL_FILE; chain_init has run, with an exit trap that also kills every
# llama-server started with
#   start_llama NAME PORT ARGS...  (sets LLAMA_PID; waits for /health 200)
# and free_port prints a free loopback port.

echo "llama-server: built from source on the first run on a machine (about 20 min" \
	"on 2 cores), taken from the cache after that"
t0=$(date +%s)
# niced: the other tests run beside the first build
if ! LLAMA_SERVER=$(nice -n 10 "$ROOT/scripts/build-llama-server.sh"); then
	echo "SKIP: llama-server cannot be built here (see the messages above)"
	exit 77
fi
LLAMA_SRC=$("$ROOT/scripts/build-llama-server.sh" --source) || exit 1
echo "llama-server: $LLAMA_SERVER ($(( $(date +%s) - t0 )) s)"

# the tiny model, made once per llama.cpp version next to the binary
MODEL_FILE=$(dirname "$(dirname "$LLAMA_SERVER")")/tiny-llama.gguf
if [ ! -s "$MODEL_FILE" ]; then
	PY=
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
	done
	[ -n "$PY" ] || { echo "FAIL: numpy is missing (scripts/install-deps.sh test installs" \
		"python3-numpy)"; exit 1; }
	PYTHONPATH="$LLAMA_SRC/gguf-py" "$PY" "$ROOT/scripts/make-tiny-gguf.py" "$LLAMA_SRC" \
		"$MODEL_FILE" >/dev/null || { echo "FAIL: cannot make the tiny model"; exit 1; }
fi

chain_init
ENGINE_PIDS=()
engine_cleanup() {
	local p
	for p in "${ENGINE_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	chain_cleanup
}
trap engine_cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_llama NAME PORT ARGS...: sets LLAMA_PID; waits until /health is 200
start_llama() {
	local name=$1 port=$2 i
	shift 2
	"$LLAMA_SERVER" -m "$MODEL_FILE" --host 127.0.0.1 --port "$port" -t 2 "$@" \
		>>"$CHAIN_TMP/llama-$name.log" 2>&1 &
	LLAMA_PID=$!
	ENGINE_PIDS+=($!)
	for i in $(seq 1 300); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] &&
			return 0
		kill -0 "$LLAMA_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL: llama-server $name did not become ready"
	tail -30 "$CHAIN_TMP/llama-$name.log"
	exit 1
}
