#!/usr/bin/env bash
# Proves drag-and-drop works in the real window: opens nanolab under Xvfb, drops an adapter file
# with a real XDND exchange (../shared/tools/xdnd_drop.py, needs python3-xlib), and checks that the
# lane's adapter stack in the saved state now holds it. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
DROP=${XDND_DROP:-../shared/tools/xdnd_drop.py}
state=$(mktemp --suffix .json)
Xvfb :91 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true; rm -f "$state"' EXIT
export DISPLAY=:91
sleep 1
NANOLAB_STATE=$state target/release/nanolab --model models/SmolLM2-135M-Instruct.Q4_1.gguf >/dev/null 2>&1 & app=$!
for _ in $(seq 50); do wid=$(xdotool search --name '^nanolab$' 2>/dev/null | head -1 || true); [[ -n "$wid" ]] && break; sleep 0.2; done
sleep 3
/usr/bin/python3 "$DROP" "$wid" 800 400 adapters/smollm2-brief.gguf
sleep 2
grep -q 'smollm2-brief.gguf' "$state" && echo "drop received: the adapter is on the lane" || { echo "drop NOT received" >&2; exit 1; }
