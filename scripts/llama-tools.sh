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
if [[ ! -x "$BIN/llama-bench" || ! -x "$BIN/llama-perplexity" ]]; then
  mkdir -p "$WORK"
  if ! ls "$WORK"/sdist/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==0.3.36" -d "$WORK/sdist" >&2
  fi
  rm -rf "$WORK"/llama_cpp_python-*/
  tar -xzf "$WORK"/sdist/llama_cpp_python-*.tar.gz -C "$WORK"
  src=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
  cmake -S "$src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$WORK/build" --target llama-bench llama-perplexity -j "$(nproc)" >&2
  # The sdist carries no git metadata: record the sdist and the ggml version of its tree.
  ggml=$(grep -m3 -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$src/ggml/CMakeLists.txt" | grep -o '[0-9]\+' | paste -sd.)
  echo "llama.cpp from $(basename "$(ls "$WORK"/sdist/*.tar.gz)") (ggml $ggml; the sdist has no git commit)" > "$WORK/version.txt"
fi
echo "$BIN"
