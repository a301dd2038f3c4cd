#!/usr/bin/env bash
# Baseline: llama.cpp's own llama-batched-bench, built by scripts/llama-tools.sh from the same
# llama.cpp tree as the other baselines, run alternately with `nanolab bench --parallel` on the
# same model, sizes and threads (prompts not shared, one context for the largest batch, batch
# 2048 / ubatch 512 as llama-batched-bench's defaults); prints both and nanolab / baseline in
# speed_tg and speed_pp for every batch size, as the mean over REPS rounds.
# BASELINE=crate runs llama-batched-bench built on nanolab's own llama.cpp instead (the
# llama-cpp-sys-2 crate's tree, scripts/llama-tools-crate.sh), to tell a gap that comes from the
# two llama.cpp versions from one that nanolab makes.
set -euo pipefail
cd "$(dirname "$0")/.."
# nanolab loads plain weight buffers where llama.cpp's AMX kernels run (they crash here; see
# engine::weight_repacking), so the baseline does too.
NOREPACK=(); grep -qw amx_int8 /proc/cpuinfo && NOREPACK=(--no-repack)
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REPS=${REPS:-3}
PP=${PP:-128}
TG=${TG:-128}
NPL=${NPL:-1,2,4,8}
if [[ "${BASELINE:-sdist}" == crate ]]; then
  BIN=$(scripts/llama-tools-crate.sh) VERSION_FILE=target/llama-tools-crate/version.txt
else
  BIN=$(scripts/llama-tools.sh llama-batched-bench) VERSION_FILE=target/llama-tools/version.txt
fi
THREADS=$(nproc)
max_pl=$(echo "$NPL" | tr , '\n' | sort -n | tail -1)
ctx=$((max_pl * (PP + TG)))
echo "llama-batched-bench: $(cat "$VERSION_FILE")"
echo "model $MODEL, pp $PP, tg $TG, npl $NPL, $THREADS threads, context $ctx"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run_baseline() {
  "$BIN/llama-batched-bench" "${NOREPACK[@]}" -m "$MODEL" -c "$ctx" -b 2048 -ub 512 -npp "$PP" -ntg "$TG" -npl "$NPL" \
    -t "$THREADS" --output-format jsonl 2>/dev/null | grep '^{' >> "$out/base.jsonl"
}
run_nanolab() {
  target/release/nanolab bench -m "$MODEL" -p "$PP" -n "$TG" --parallel "$NPL" --threads "$THREADS" \
    --no-static -o json 2>/dev/null | python3 -c 'import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]' >> "$out/nanolab.jsonl"
}
# Alternate which runs first so drift in the machine's speed hits both equally.
for r in $(seq "$REPS"); do
  if ((r % 2)); then run_baseline; run_nanolab; else run_nanolab; run_baseline; fi
done
python3 - "$out/base.jsonl" "$out/nanolab.jsonl" <<'PY'
import json, sys
from statistics import mean
def load(p):
    rows = {}
    for line in open(p):
        r = json.loads(line)
        rows.setdefault(r["pl"], []).append(r)
    return rows
base, nano = load(sys.argv[1]), load(sys.argv[2])
print("| B | baseline S_PP | nanolab S_PP | ratio | baseline S_TG | nanolab S_TG | ratio (target >= 0.95) |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for pl in sorted(base):
    b_pp, n_pp = mean(r["speed_pp"] for r in base[pl]), mean(r["speed_pp"] for r in nano[pl])
    b_tg, n_tg = mean(r["speed_tg"] for r in base[pl]), mean(r["speed_tg"] for r in nano[pl])
    print(f"| {pl} | {b_pp:.1f} | {n_pp:.1f} | {n_pp / b_pp:.3f} | {b_tg:.1f} | {n_tg:.1f} | {n_tg / b_tg:.3f} |")
PY
