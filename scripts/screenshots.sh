#!/usr/bin/env bash
# Refreshes screenshots/ from the real window on the demo model. Uses Xvfb when no display is set.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/nanolab
out=screenshots
if [[ -n "${DISPLAY:-}" ]]; then
  "$BIN" screenshot --out "$out"
else
  command -v xvfb-run >/dev/null || { echo "install xvfb (scripts/setup.sh --test) or set DISPLAY" >&2; exit 1; }
  # glow on Mesa's llvmpipe under Xvfb.
  xvfb-run -a -s "-screen 0 1280x800x24" "$BIN" screenshot --out "$out"
fi
