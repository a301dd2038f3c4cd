#!/usr/bin/env bash
# The window's own cost, under Xvfb with Mesa (glow on llvmpipe): idle CPU with nothing running,
# then 4 lanes streaming with graphs open (Ctrl+Enter sent with xdotool): frame times of the UI
# pass and each lane's decode tok/s, against the engine alone (`nanolab bench` tg) in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/nanolab
MODEL=$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf
N=${N:-128}
tmp=$(mktemp -d)
trap 'kill $app $xvfb 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 - "$MODEL" "$N" > "$tmp/state.json" <<'PY'
import json, sys
model, n = sys.argv[1], int(sys.argv[2])
lane = lambda i: {"id": i, "model": model, "n_ctx": 1024, "adapters": [],
                  "sampling": {"temperature": 0.0, "max_tokens": n, "seed": 42}, "output": {}}
print(json.dumps({"version": 1, "lanes": [lane(i) for i in range(1, 5)], "chat_mode": False,
                  "prompt": "1, 2, 3, 4, 5, 6,", "same_settings": True, "show_graphs": True,
                  "show_library": True, "dark": True, "next_lane_id": 5}))
PY
Xvfb :93 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
export DISPLAY=:93
sleep 1
NANOLAB_STATE=$tmp/state.json NANOLAB_FRAME_STATS=$tmp/frames.json $BIN >/dev/null 2>&1 & app=$!
sleep 6
ticks() { awk '{print $14 + $15}' /proc/$app/stat; }
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep 10; t1=$(ticks)
idle=$(python3 -c "print(f'{($t1 - $t0) / $hz / 10 * 100:.2f}')")
wid=$(xdotool search --name '^nanolab$' | head -1)
xdotool windowfocus --sync "$wid" 2>/dev/null || true
# "Run all" sits at the bottom right of the 1280x800 window (see screenshots/).
xdotool mousemove 1185 758 click 1
for _ in $(seq 120); do
  sleep 1
  python3 -c "import json,sys; s=json.load(open('$tmp/state.json')); sys.exit(0 if all(l['output'].get('stats') for l in s['lanes']) else 1)" && break
done
sleep 3
window_tps=$(python3 -c "import json; s=json.load(open('$tmp/state.json')); print(' '.join(f\"{(l['output'].get('stats') or {}).get('decode_tokens_per_sec', 0):.1f}\" for l in s['lanes']))")
frames=$(cat "$tmp/frames.json")
kill $app; wait $app 2>/dev/null || true
engine=$(for _ in 1 2 3; do $BIN run -m "$MODEL" -p "1, 2, 3, 4, 5, 6," -n "$N" --ctx 1024 --top-n 5 --json; done \
  | python3 -c 'import json,sys; d=json.JSONDecoder(); s=sys.stdin.read(); v=[]; i=0
while i < len(s):
    s2=s[i:].lstrip(); 
    if not s2: break
    o,n=d.raw_decode(s2); v.append(o["decode_tokens_per_sec"]); i=len(s)-len(s2)+n
print(f"{sum(v)/len(v):.1f}")')
echo "window idle CPU over 10 s: ${idle}% of one core"
echo "4 lanes streaming, decode tok/s per lane (window): $window_tps"
echo "engine alone (nanolab run, same prompt, top-5 probabilities, 3 runs): $engine tok/s"
echo "UI frame times while streaming: $frames"
