#!/usr/bin/env bash
# build-llama-server.sh - build llama.cpp's llama-server from source, CPU only,
# and cache the binary so that only the first run on a machine pays for it.
#
#   scripts/build-llama-server.sh            prints the path of llama-server
#   scripts/build-llama-server.sh --source   prints the path of the llama.cpp
#                                            source tree (gguf-py, models/)
#
# The source comes from the npm package node-llama-cpp, which ships llama.cpp's
# full tree as a git bundle (package/llama/gitRelease.bundle); the version is
# pinned below.  Only the llama-server target is built, CPU only, portable
# (no -march=native), with every option that could download something turned
# off (web UI from npm or a Hugging Face bucket, KleidiAI, OpenMP installers).
#
# Cache: ${TROOP_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monkey-troop}/
#   llama.cpp-<commit>/src        the clone (kept: tests need gguf-py, models/)
#   llama.cpp-<commit>/bin/llama-server
# keyed by the llama.cpp commit of the bundle.  A second run only prints paths.
# Progress goes to stderr; stdout carries only the path asked for.
# Exit status: 0 built or cached; 1 a step failed (message on stderr).
set -euo pipefail

NODE_LLAMA_CPP_VERSION=${NODE_LLAMA_CPP_VERSION:-3.22.1}
JOBS=${TROOP_LLAMA_JOBS:-2}
cache_root=${TROOP_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monkey-troop}
want=bin
[[ ${1:-} == --source ]] && want=src

log() { echo "build-llama-server: $*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$cache_root"
exec 9>"$cache_root/.llama-build.lock"
# one build per machine at a time; a second caller waits for the first
flock 9

# the npm tarball is itself cached: the version pins it
pkgdir="$cache_root/node-llama-cpp-$NODE_LLAMA_CPP_VERSION"
if [[ ! -f "$pkgdir/package/llama/gitRelease.bundle" ]]; then
	command -v npm >/dev/null || die "npm not found (scripts/install-deps.sh test)"
	log "fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION from npm"
	tmp=$(mktemp -d "$cache_root/.pack.XXXXXX")
	(cd "$tmp" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null) ||
		{ rm -rf "$tmp"; die "npm pack node-llama-cpp@$NODE_LLAMA_CPP_VERSION failed"; }
	tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle \
		package/llama/llama.cpp.info.json ||
		{ rm -rf "$tmp"; die "no llama/gitRelease.bundle in the npm package"; }
	rm -f "$tmp"/*.tgz
	rm -rf "$pkgdir"
	mv "$tmp" "$pkgdir"
fi
bundle="$pkgdir/package/llama/gitRelease.bundle"
commit=$(git bundle list-heads "$bundle" | awk 'NR==1 { print substr($1, 1, 12) }')
[[ -n "$commit" ]] || die "cannot read the bundle's head"

dir="$cache_root/llama.cpp-$commit"
if [[ ! -d "$dir/src/.git" ]]; then
	rm -rf "$dir/src"
	mkdir -p "$dir"
	git clone -q "$bundle" "$dir/src" 2>/dev/null || die "git clone of the bundle failed"
fi
if [[ $want == src ]]; then
	echo "$dir/src"
	exit 0
fi

bin="$dir/bin/llama-server"
if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

command -v cmake >/dev/null || die "cmake not found (scripts/install-deps.sh build)"
log "building llama-server (llama.cpp $commit) with $JOBS jobs; the first build"
log "takes about 20 minutes on 2 cores, later runs use the cache in $dir"
start=$(date +%s)
build="$dir/build"
cmake -S "$dir/src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
	-DBUILD_SHARED_LIBS=OFF \
	-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
	-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF \
	-DGGML_CPU_KLEIDIAI=OFF \
	-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
	-DLLAMA_LLGUIDANCE=OFF -DLLAMA_OPENSSL=OFF \
	>"$dir/cmake-configure.log" 2>&1 ||
	die "cmake configure failed: see $dir/cmake-configure.log"
cmake --build "$build" --target llama-server -j "$JOBS" >"$dir/cmake-build.log" 2>&1 ||
	die "build failed: see $dir/cmake-build.log"
mkdir -p "$dir/bin"
cp "$build/bin/llama-server" "$bin.tmp"
mv "$bin.tmp" "$bin"
rm -rf "$build"
log "built in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
