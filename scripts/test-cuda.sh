#!/usr/bin/env bash
# `make test-cuda`: builds the CUDA variant (its own target dir, target/cuda) and runs the engine,
# LoRA and CLI tests on it. With an NVIDIA GPU and driver, every layer is offloaded and `nanolab devices`
# must list the GPU; without one (as on the CI machines) the same build must start, report no CUDA
# device and run everything on the CPU, which is what a CUDA build shipped to a machine without a
# GPU does.
#
# The toolkit comes from CUDA_PATH, or else from NVIDIA's CUDA 13 wheels on PyPI
# (scripts/cuda-toolkit.sh). Those carry shared cudart/cuBLAS only, so llama.cpp is built as shared
# libraries (LLAMA_BUILD_SHARED_LIBS=1; they sit beside the binaries, found through an $ORIGIN
# rpath) and without linking the driver library (llama-cpp-sys-2's cuda-no-vmm: ggml's
# legacy memory pool instead of CUDA virtual memory; cudart still loads the driver at run time).
# GPU code is built for CMAKE_CUDA_ARCHITECTURES: the GPU's own when nvidia-smi sees one, else 90
# (H100) so the compile check stays near 40 minutes on 2 cores. Set it to build for others.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
model=$repo/models/SmolLM2-135M-Instruct.Q4_1.gguf
cuda=$(scripts/cuda-toolkit.sh)
gpu=""
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -1)
fi
if [[ -z "${CMAKE_CUDA_ARCHITECTURES:-}" ]]; then
  if [[ -n "$gpu" ]]; then
    CMAKE_CUDA_ARCHITECTURES=$(echo "${gpu##*, }" | tr -d .)
  else
    CMAKE_CUDA_ARCHITECTURES=90
  fi
fi
export CMAKE_CUDA_ARCHITECTURES
export PATH=$cuda/bin:$PATH CUDACXX=$cuda/bin/nvcc CUDAToolkit_ROOT=$cuda CUDA_PATH=$cuda
export LLAMA_BUILD_SHARED_LIBS=1 CARGO_TARGET_DIR=target/cuda
export RUSTFLAGS='-C link-arg=-Wl,-rpath,$ORIGIN'
echo "test-cuda: toolkit $cuda ($("$cuda/bin/nvcc" --version | grep -o 'release [0-9.]*')), architectures $CMAKE_CUDA_ARCHITECTURES"
cargo build --release --features cuda,llama-cpp-sys-2/cuda-no-vmm --all-targets
# llama-cpp-sys-2 links only the unversioned names (libllama.so) beside the binaries, which need the
# versioned ones (libllama.so.0). Put those beside the binaries and in deps/ (the test binaries),
# each finding its siblings and the toolkit's cudart and cuBLAS through its rpath.
command -v patchelf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null
lib=$(ls -td target/cuda/release/build/llama-cpp-sys-2-*/out/lib | head -1)
for dir in target/cuda/release target/cuda/release/deps; do
  for f in "$lib"/lib*.so.0; do
    rm -f "$dir/${f##*/}"
    cp -L "$f" "$dir/"
    patchelf --set-rpath "\$ORIGIN:$cuda/lib64:$cuda/lib" "$dir/${f##*/}"
  done
done

bin=target/cuda/release/nanolab
devices=$("$bin" devices --json)
echo "$devices"
cuda_devices=$(echo "$devices" | python3 -c 'import json,sys; print(sum(d["backend"]=="CUDA" for d in json.load(sys.stdin)["devices"]))')
if [[ -n "$gpu" ]]; then
  echo "test-cuda: GPU $gpu; the tests offload every layer to it"
  [[ $cuda_devices -ge 1 ]] || { echo "test-cuda: nvidia-smi sees a GPU but nanolab lists no CUDA device" >&2; exit 1; }
else
  echo "test-cuda: no NVIDIA GPU or driver here; the CUDA build must run on the CPU"
  [[ $cuda_devices -eq 0 ]] || { echo "test-cuda: a CUDA device is listed without a driver" >&2; exit 1; }
fi
"$bin" run --model "$model" --chat "What is the capital of France?" -n 16
# The unreadable-file test runs a copy of the binary as `nobody` from a temporary folder, away
# from its libraries and the toolkit in root's home; it is a CPU build's test (`make test`).
for t in engine adapters cli_bad_input; do
  test_bin=$(ls -t target/cuda/release/deps/"$t"-* | grep -v '\.d$' | head -1)
  echo "test-cuda: $t"
  NANOLAB_TEST_MODEL="$model" "$test_bin" --test-threads=1 --skip an_unreadable_file_is_reported_as_such
done
