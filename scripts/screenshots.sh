#!/usr/bin/env bash
# Refreshes screenshots/ from the real window on the demo model. Uses Xvfb when no display is set.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/nanolab
out=screenshots
# A models folder of its own, holding the demo model only: the ladder the lab screenshot makes
# (F16, Q8_0, …) lands there, not in models/, so neither the user's folder nor the next run's
# library panel shows it.
shots_models=target/screenshot-models
mkdir -p "$shots_models"
# What the last run's ladder made goes, so every run starts from the same library.
find "$shots_models" -maxdepth 1 -type f -delete
demo=models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f "$demo" ]] || { echo "fetch the demo model first: make demo-model" >&2; exit 1; }
ln -f "$demo" "$shots_models/" 2>/dev/null || cp "$demo" "$shots_models/"
export NANOLAB_MODELS=$shots_models
if [[ -n "${DISPLAY:-}" ]]; then
  "$BIN" screenshot --out "$out"
else
  command -v xvfb-run >/dev/null || { echo "install xvfb (scripts/setup.sh --test) or set DISPLAY" >&2; exit 1; }
  # glow on Mesa's llvmpipe under Xvfb.
  xvfb-run -a -s "-screen 0 1280x800x24" "$BIN" screenshot --out "$out"
fi
