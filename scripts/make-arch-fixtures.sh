#!/usr/bin/env bash
# Remakes tests/fixtures/archs (tiny random Hugging Face models and PEFT adapters per
# architecture, converted by llama.cpp's own convert_hf_to_gguf.py and convert_lora_to_gguf.py).
# Needs the fixture venv (scripts/setup.sh --test makes target/py-fixtures) and llama.cpp's tree
# from the same sdist as the baselines (scripts/llama-tools.sh unpacks it into
# target/llama-tools/src). Seeded, so a rerun writes the same tensors; the outputs are committed.
# Usage: scripts/make-arch-fixtures.sh [ARCH...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/llama-tools.sh >/dev/null
target/py-fixtures/bin/python tests/fixtures/archs/make.py target/llama-tools/src "$@"
