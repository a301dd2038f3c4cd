#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-perplexity, and any extra targets named as
# arguments, e.g. llama-server or llama-batched-bench) as baselines, from the llama.cpp tree
# inside the llama-cpp-python sdist (the llama-cpp-sys-2 crate strips tools/), with the same CPU
# flags as nanolab's own build: GGML_NATIVE=ON like `make run`/`make test` (.cargo/config.toml
# sets target-cpu=native), or GGML_NATIVE=OFF with PORTABLE=1 like `make dist`. Cached in
# target/llama-tools (target/llama-tools-portable); prints the bin folder. nanolab never links or
# copies this code: it only runs the binaries to compare numbers. About 10 minutes on 2 cores the
# first time.
# Usage: scripts/llama-tools.sh [EXTRA_TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${PORTABLE:-0}" == 1 ]]; then
  WORK=target/llama-tools-portable NATIVE=OFF
else
  WORK=target/llama-tools NATIVE=ON
fi
BIN="$WORK/build/bin"
targets=(llama-bench llama-perplexity "$@")
VERSION=0.3.36
SDIST="target/llama-tools-sdist/llama_cpp_python-$VERSION.tar.gz"
# Neither this sdist nor the llama-cpp-sys-2 crate carries llama.cpp's git commit, so the
# baseline is pinned by the sdist's sha256 (and nanolab's llama.cpp by the crate's checksum in
# Cargo.lock).
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
missing=()
for t in "${targets[@]}"; do
  [[ -x "$BIN/$t" ]] || missing+=("$t")
done
if ((${#missing[@]})); then
  mkdir -p "$WORK"
  if [[ ! -f "$SDIST" ]]; then
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$(dirname "$SDIST")" >&2
  fi
  if ! echo "$SHA256  $SDIST" | sha256sum -c --quiet - >&2; then
    echo "error: $SDIST does not have the pinned sha256 $SHA256; removed it, run again to download it anew" >&2
    rm -f "$SDIST"
    exit 1
  fi
  if [[ ! -d "$WORK/src" ]]; then
    rm -rf "$WORK"/llama_cpp_python-*/
    tar -xzf "$SDIST" -C "$WORK"
    mv "$WORK"/llama_cpp_python-*/vendor/llama.cpp "$WORK/src"
    rm -rf "$WORK"/llama_cpp_python-*/
  fi
  src="$WORK/src"
  # The server's web UI is not needed to serve the API; LLAMA_BUILD_SERVER only adds the target
  # and LLAMA_USE_PREBUILT_UI=OFF keeps its build from trying to download a prebuilt UI.
  cmake -S "$src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=$NATIVE -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$WORK/build" --target "${missing[@]}" -j "$(nproc)" >&2
  # The sdist carries no git metadata: record the sdist and the ggml version of its tree.
  ggml=$(grep -m3 -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$src/ggml/CMakeLists.txt" | grep -o '[0-9]\+' | paste -sd.)
  echo "llama.cpp from $(basename "$SDIST") (sha256 $SHA256; ggml $ggml; GGML_NATIVE=$NATIVE; the sdist has no git commit)" > "$WORK/version.txt"
fi
echo "$BIN"
