#!/usr/bin/env bash
# Prepares a CUDA toolkit for `make test-cuda` from NVIDIA's CUDA 13 wheels on PyPI (nvcc, cicc,
# the CUDA runtime, CCCL headers and cuBLAS), for machines without NVIDIA's installer. Each wheel
# is pinned by version and sha256 and checked after download. The wheels unpack into the layout
# nvcc expects (bin, include, include/cccl, lib, nvvm) in ~/.cache/nanolab/cuda13; the unversioned
# .so links CMake looks for are added. The wheels carry shared cudart/cuBLAS only (no
# cublas_static, no libcuda stub), which is why the CUDA build links llama.cpp's libraries
# dynamically and without the driver library (scripts/test-cuda.sh). Prints the toolkit folder.
# A system toolkit is used instead when CUDA_PATH names one.
set -euo pipefail
if [[ -n "${CUDA_PATH:-}" && -x "$CUDA_PATH/bin/nvcc" ]]; then
  echo "$CUDA_PATH"
  exit 0
fi
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/nanolab
ROOT=$CACHE/cuda13
if [[ ! -x "$ROOT/bin/nvcc" || ! -f "$ROOT/lib/libcublas.so" ]]; then
  # name==version sha256 (CUDA 13.5 compiler and runtime; cuBLAS 13.10)
  wheels=(
    "nvidia-cuda-nvcc==13.5.37 f5c4f7ead5d964fb4af42bbf1e6d3ec3c1e6e9d83b53749f691d387e7fcaa3a7"
    "nvidia-cuda-crt==13.5.37 e898b7f73d3035fa89915a3f7bf3b54a73e90249746111aed295822c4729bb29"
    "nvidia-nvvm==13.5.37 c41bfa362e407405163f103c2229f0765f8cc2ed7d148b754dc77f228bf7e070"
    "nvidia-cuda-runtime==13.5.37 df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d"
    "nvidia-cuda-cccl==13.3.5.0.6 d5230098fa2df5021e1a00c0c4eee41797671a91119d31e892463e5ccf3ee326"
    "nvidia-cublas==13.10.0.20 dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84"
  )
  dl=$CACHE/cuda-wheels
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$dl"
  for w in "${wheels[@]}"; do
    spec=${w% *} sum=${w#* }
    file=$(ls "$dl"/"$(echo "${spec%%==*}" | tr - _)"-"${spec#*==}"-*.whl 2>/dev/null | head -1 || true)
    if [[ -z "$file" ]]; then
      echo "cuda-toolkit: downloading $spec" >&2
      python3 -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 \
        --platform manylinux_2_5_x86_64 "$spec" -d "$dl" >&2
      file=$(ls "$dl"/"$(echo "${spec%%==*}" | tr - _)"-"${spec#*==}"-*.whl | head -1)
    fi
    if [[ $(sha256sum "$file" | cut -d' ' -f1) != "$sum" ]]; then
      echo "cuda-toolkit: $file does not match its pinned sha256; deleted, run again" >&2
      rm -f "$file"
      exit 1
    fi
    python3 -m zipfile -e "$file" "$work/x"
  done
  rm -rf "$ROOT.partial"
  mv "$work/x/nvidia/cu13" "$ROOT.partial"
  chmod +x "$ROOT.partial"/bin/* "$ROOT.partial"/nvvm/bin/*
  for l in cudart cublas cublasLt; do ln -sf "lib$l.so.13" "$ROOT.partial/lib/lib$l.so"; done
  rm -rf "$ROOT"
  mv "$ROOT.partial" "$ROOT"
fi
echo "$ROOT"
