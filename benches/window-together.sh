#!/usr/bin/env bash
# "Run all" in the real window (Xvfb, Mesa) with 4 lanes on one model and one stack (the demo
# model, no adapters, greedy): lanes together (the default: every lane streams at once, base lanes
# decoded in one batch) against "One lane at a time", alternated over ROUNDS rounds in one run,
# with a window holding a single lane as the TTFT reference. Reports the wall time from the click
# to the last lane's stats in the state file, and each lane's time to first token as the window
# saw it (ttft_ms: from the engine taking the request, queueing behind other lanes included).
# Targets (issue "lanes stream together"): together <= 0.5x one after another; every lane's
# TTFT together <= 2x the single lane's.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/nanolab
MODEL=$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf
N=${N:-128}
ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d)
app=
trap 'kill $app $xvfb 2>/dev/null || true; rm -rf "$tmp"' EXIT
Xvfb :94 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
export DISPLAY=:94
sleep 1

# run LANES ONE_AT_A_TIME: prints "WALL_S TTFT_MS,TTFT_MS,..." for one "Run all".
run() {
  local lanes=$1 turns=$2 state=$tmp/state-$1-$2.json
  python3 - "$MODEL" "$N" "$lanes" "$turns" > "$state" <<'PY'
import json, sys
model, n, lanes, turns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
lane = lambda i: {"id": i, "model": model, "n_ctx": 1024, "adapters": [],
                  "sampling": {"temperature": 0.0, "max_tokens": n, "seed": 42}, "output": {}}
print(json.dumps({"version": 1, "lanes": [lane(i) for i in range(1, lanes + 1)], "chat_mode": False,
                  "prompt": "1, 2, 3, 4, 5, 6,", "same_settings": True, "show_graphs": True,
                  "show_library": True, "dark": True, "next_lane_id": lanes + 1,
                  "one_lane_at_a_time": turns}))
PY
  NANOLAB_STATE=$state $BIN >/dev/null 2>&1 & app=$!
  sleep 6
  local wid
  wid=$(xdotool search --name '^nanolab$' | head -1)
  xdotool windowfocus --sync "$wid" 2>/dev/null || true
  local w0 w1
  w0=$(date +%s.%N)
  # "Run all" sits at the bottom right of the 1280x800 window (see screenshots/).
  xdotool mousemove 1185 758 click 1
  # Polled with grep every 20 ms: cheap, so the poller costs the lanes little.
  for _ in $(seq 3000); do
    sleep 0.02
    [ "$(grep -o '"decode_tokens_per_sec"' "$state" | wc -l)" -ge "$lanes" ] && break
  done
  w1=$(date +%s.%N)
  kill $app; wait $app 2>/dev/null || true
  python3 - "$state" "$w0" "$w1" <<'PY'
import json, sys
lanes = json.load(open(sys.argv[1]))["lanes"]
stats = [l["output"].get("stats") or {} for l in lanes]
print(f"{float(sys.argv[3]) - float(sys.argv[2]):.3f}", ",".join(f"{s.get('ttft_ms', float('nan')):.1f}" for s in stats),
      ",".join(str(s.get("batched_with", 0)) for s in stats))
PY
}

for r in $(seq "$ROUNDS"); do
  # Alternate which mode goes first, so a warm cache or a busy moment favours neither.
  if (( r % 2 )); then order="1 0"; else order="0 1"; fi
  for turns in $order; do
    echo "round $r $( ((turns)) && echo turns || echo together) $(run 4 "$turns")"
  done
  echo "round $r single $(run 1 0)"
done | tee "$tmp/rows.txt"
python3 - "$tmp/rows.txt" "$N" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
get = lambda mode: [(float(r[3]), [float(x) for x in r[4].split(",")], r[5]) for r in rows if r[2] == mode]
together, turns, single = get("together"), get("turns"), get("single")
wall = lambda rs: statistics.mean(r[0] for r in rs)
ttft_single = statistics.mean(r[1][0] for r in single)
worst_ttft = max(max(r[1]) for r in together)
print(f"4 lanes x {sys.argv[2]} tokens, Run all, mean of {len(together)} rounds:")
print(f"  together: {wall(together):.2f} s (batched_with per lane: {together[-1][2]})")
print(f"  one lane at a time: {wall(turns):.2f} s")
print(f"  together / one after another: {wall(together) / wall(turns):.3f} (target <= 0.5)")
print(f"  TTFT single lane: {ttft_single:.1f} ms; together, every lane, every round: "
      f"{', '.join('/'.join(f'{t:.0f}' for t in r[1]) for r in together)} ms")
print(f"  worst lane TTFT together / single lane TTFT: {worst_ttft / ttft_single:.2f} (target <= 2)")
PY
