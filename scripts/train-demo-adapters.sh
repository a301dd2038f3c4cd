#!/usr/bin/env bash
# Trains the two demo LoRA adapters for the demo model on CPU and converts them with nanolab's
# own PEFT importer into adapters/. Not part of CI (about 25 minutes on 2 cores); the outputs
# are committed. Needs: the release binary (make build) and the demo model (make demo-model).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/nanolab
MODEL=$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf
WORK=${WORK:-$PWD/target/adapter-training}
VENV=${VENV:-$WORK/venv}
STEPS=${STEPS:-120}
mkdir -p "$WORK"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers peft gguf sentencepiece accelerate safetensors numpy
fi
"$VENV/bin/pip" freeze | grep -iE '^(torch|transformers|peft|safetensors)==' > "$WORK/versions.txt"
cd adapters/training
python3 make_data.py "$BIN" "$MODEL" "$WORK"
for target in caps brief; do
  "$VENV/bin/python" train.py "$(dirname "$MODEL")" "$(basename "$MODEL")" "$WORK/data.json" "$target" \
    "$WORK/peft-$target" "$STEPS" | tee "$WORK/train-$target.log"
done
cd ../..
"$BIN" adapters import "$WORK/peft-caps" --model "$MODEL" --out adapters/smollm2-caps.gguf --type f16
"$BIN" adapters import "$WORK/peft-brief" --model "$MODEL" --out adapters/smollm2-brief.gguf --type f16
cp "$WORK/versions.txt" adapters/training/versions.txt
echo "done: adapters/smollm2-caps.gguf adapters/smollm2-brief.gguf"
