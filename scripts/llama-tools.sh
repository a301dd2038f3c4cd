#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-perplexity) as baselines, from the llama.cpp
# tree inside the llama-cpp-python sdist (the llama-cpp-sys-2 crate strips tools/), with the same
# CPU flags as llama-cpp-sys-2's default build (GGML_NATIVE=OFF). Cached in target/llama-tools;
# prints the bin folder. nanolab never links or copies this code: it only runs the binaries to
# compare numbers. About 10 minutes on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=target/llama-tools
BIN="$WORK/build/bin"
VERSION=0.3.36
SDIST="$WORK/sdist/llama_cpp_python-$VERSION.tar.gz"
# Neither this sdist nor the llama-cpp-sys-2 crate carries llama.cpp's git commit, so the
# baseline is pinned by the sdist's sha256 (and nanolab's llama.cpp by the crate's checksum in
# Cargo.lock).
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if [[ ! -x "$BIN/llama-bench" || ! -x "$BIN/llama-perplexity" ]]; then
  mkdir -p "$WORK"
  if [[ ! -f "$SDIST" ]]; then
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK/sdist" >&2
  fi
  if ! echo "$SHA256  $SDIST" | sha256sum -c --quiet - >&2; then
    echo "error: $SDIST does not have the pinned sha256 $SHA256; removed it, run again to download it anew" >&2
    rm -f "$SDIST"
    exit 1
  fi
  rm -rf "$WORK"/llama_cpp_python-*/
  tar -xzf "$SDIST" -C "$WORK"
  src=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
  cmake -S "$src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$WORK/build" --target llama-bench llama-perplexity -j "$(nproc)" >&2
  # The sdist carries no git metadata: record the sdist and the ggml version of its tree.
  ggml=$(grep -m3 -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$src/ggml/CMakeLists.txt" | grep -o '[0-9]\+' | paste -sd.)
  echo "llama.cpp from $(basename "$SDIST") (sha256 $SHA256; ggml $ggml; the sdist has no git commit)" > "$WORK/version.txt"
fi
echo "$BIN"
