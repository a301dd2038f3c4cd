#!/usr/bin/env bash
# Baseline (b): llama.cpp's own llama-bench, built from the llama.cpp tree inside the
# llama-cpp-python sdist (the llama-cpp-sys-2 crate strips tools/) by scripts/llama-tools.sh,
# run alternately with `nanolab bench` on the same model; prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
# nanolab loads plain weight buffers where llama.cpp's AMX kernels run (they crash here; see
# engine::weight_repacking), so the baseline does too.
NOREPACK=(); grep -qw amx_int8 /proc/cpuinfo && NOREPACK=(--repack 0)
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REPS=${REPS:-5}
BIN=$(scripts/llama-tools.sh)
THREADS=$(nproc)
sys_dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$(grep -A1 'name = "llama-cpp-sys-2"' Cargo.lock | grep version | cut -d'"' -f2)" | head -1)
sys_ggml=$(grep -m3 -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$sys_dir/llama.cpp/ggml/CMakeLists.txt" | grep -o '[0-9]\+' | paste -sd.)
echo "llama-bench: $(cat target/llama-tools/version.txt)"
echo "nanolab: llama.cpp from $(basename "$sys_dir") (ggml $sys_ggml)"
lb_pp=(); lb_tg=(); nl_pp=(); nl_tg=()
run_llama_bench() {
  out=$("$BIN/llama-bench" -m "$MODEL" -p 512 -n 128 -r 1 -t "$THREADS" "${NOREPACK[@]}" -o csv 2>/dev/null)
  lb_pp+=("$(echo "$out" | awk -F, 'NR>1 && /"512","0"/ {gsub(/"/,""); print $(NF-1)}' | head -1)")
  lb_tg+=("$(echo "$out" | awk -F, 'NR>1 && /"0","128"/ {gsub(/"/,""); print $(NF-1)}' | head -1)")
}
run_nanolab() {
  # -o json is llama-bench's shape: an array of rows (pp, then tg).
  j=$(target/release/nanolab bench -m "$MODEL" -p 512 -n 128 -r 1 --threads "$THREADS" --no-baseline -o json 2>/dev/null)
  nl_pp+=("$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])')")
  nl_tg+=("$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)[1]["avg_ts"])')")
}
# Alternate which runs first so drift in the machine's speed hits both equally.
for r in $(seq "$REPS"); do
  if ((r % 2)); then run_llama_bench; run_nanolab; else run_nanolab; run_llama_bench; fi
done
python3 - "${lb_pp[*]}" "${lb_tg[*]}" "${nl_pp[*]}" "${nl_tg[*]}" <<'PY'
import statistics as st, sys
lp, lt, np_, nt = ([float(x) for x in a.split() if x] for a in sys.argv[1:5])
f = lambda v: f"{st.mean(v):.2f} ± {st.stdev(v) if len(v) > 1 else 0:.2f}"
print(f"| test | llama-bench | nanolab | nanolab / llama-bench |\n|---|---:|---:|---:|")
print(f"| pp512 | {f(lp)} | {f(np_)} | {st.mean(np_)/st.mean(lp):.3f} |")
print(f"| tg128 | {f(lt)} | {f(nt)} | {st.mean(nt)/st.mean(lt):.3f} |")
PY
