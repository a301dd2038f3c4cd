#!/usr/bin/env bash
# Builds llama-batched-bench on the very llama.cpp nanolab links: the tree vendored in the
# llama-cpp-sys-2 crate (Cargo.lock's version), with the tool's own source taken from the sdist
# tree of scripts/llama-tools.sh, since the crate strips tools/. The baselines of the benchmarks
# stay the sdist's tools; this build only answers whether a gap against them comes from the two
# llama.cpp versions or from nanolab (benches/vs-llama-batched-bench.sh with BASELINE=crate).
# Same CPU flags as nanolab's build (GGML_NATIVE=ON). Cached in target/llama-tools-crate; prints
# the bin folder. About 10 minutes on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=target/llama-tools-crate
BIN="$WORK/build/bin"
if [[ ! -x "$BIN/llama-batched-bench" ]]; then
  tools=$(scripts/llama-tools.sh llama-batched-bench >/dev/null && echo target/llama-tools/src/tools)
  crate=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "llama-cpp-sys-2"]
print(os.path.join(os.path.dirname(pkgs[0]["manifest_path"]), "llama.cpp"))')
  [[ -f "$crate/CMakeLists.txt" ]] || { echo "error: no llama.cpp tree in the llama-cpp-sys-2 crate at $crate" >&2; exit 1; }
  rm -rf "$WORK/src"
  mkdir -p "$WORK"
  cp -r "$crate" "$WORK/src"
  # Only the tool under test: the crate's tools/ holds READMEs and no sources.
  rm -rf "$WORK/src/tools"
  mkdir -p "$WORK/src/tools"
  cp -r "$tools/batched-bench" "$WORK/src/tools/"
  echo 'add_subdirectory(batched-bench)' > "$WORK/src/tools/CMakeLists.txt"
  cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$WORK/build" --target llama-batched-bench -j "$(nproc)" >&2
  ggml=$(grep -m3 -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$WORK/src/ggml/CMakeLists.txt" | grep -o '[0-9]\+' | paste -sd.)
  echo "llama.cpp of $(basename "$(dirname "$crate")") (ggml $ggml; GGML_NATIVE=ON), llama-batched-bench's source from $(cat target/llama-tools/version.txt | cut -d' ' -f3)" > "$WORK/version.txt"
fi
echo "$BIN"
