#!/usr/bin/env bash
# The native build (`make run`/`make test`: target-cpu=native → GGML_NATIVE=ON) against the portable
# one (`make dist`: GGML_NATIVE=OFF), for nanolab and for llama.cpp's own llama-bench built both
# ways by scripts/llama-tools.sh, the four alternating in one run (the order rotates each round).
# Prints pp512 and tg128 t/s (mean ± sd) and the native / portable ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
# nanolab loads plain weight buffers where llama.cpp's AMX kernels run (they crash here; see
# engine::weight_repacking), so the baseline does too.
NOREPACK=(); grep -qw amx_int8 /proc/cpuinfo && NOREPACK=(--repack 0)
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REPS=${REPS:-5}
THREADS=$(nproc)
NATIVE_LB=$(scripts/llama-tools.sh)
PORTABLE_LB=$(PORTABLE=1 scripts/llama-tools.sh)
cargo build --release -q
[[ -x target/dist/release/nanolab ]] || make dist >/dev/null
for b in target/release/nanolab target/dist/release/nanolab; do
  echo "$b: $($b devices | grep 'CPU features')"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
declare -A pp tg
lb() {
  local out; out=$("$2/llama-bench" -m "$MODEL" -p 512 -n 128 -r 1 -t "$THREADS" "${NOREPACK[@]}" -o csv 2>/dev/null)
  pp[$1]+=" $(echo "$out" | awk -F, 'NR>1 && /"512","0"/ {gsub(/"/,""); print $(NF-1)}' | head -1)"
  tg[$1]+=" $(echo "$out" | awk -F, 'NR>1 && /"0","128"/ {gsub(/"/,""); print $(NF-1)}' | head -1)"
}
nl() {
  local j; j=$("$2" bench -m "$MODEL" -p 512 -n 128 -r 1 --threads "$THREADS" --no-baseline -o json 2>/dev/null)
  pp[$1]+=" $(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])')"
  tg[$1]+=" $(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)[1]["avg_ts"])')"
}
runs=("lb llama-bench-native $NATIVE_LB" "lb llama-bench-portable $PORTABLE_LB"
      "nl nanolab-native target/release/nanolab" "nl nanolab-portable target/dist/release/nanolab")
for r in $(seq "$REPS"); do
  for i in 0 1 2 3; do
    read -r fn name arg <<<"${runs[$(((i + r) % 4))]}"
    "$fn" "$name" "$arg"
  done
done
python3 - "${pp[llama-bench-native]}" "${pp[llama-bench-portable]}" "${pp[nanolab-native]}" "${pp[nanolab-portable]}" \
  "${tg[llama-bench-native]}" "${tg[llama-bench-portable]}" "${tg[nanolab-native]}" "${tg[nanolab-portable]}" <<'PY'
import statistics as st, sys
v = [[float(x) for x in a.split()] for a in sys.argv[1:9]]
f = lambda x: f"{st.mean(x):.1f} ± {st.stdev(x) if len(x) > 1 else 0:.1f}"
print("| test | llama-bench native | llama-bench portable | native / portable | nanolab native | nanolab portable | native / portable |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, (a, b, c, d) in (("pp512", v[0:4]), ("tg128", v[4:8])):
    print(f"| {name} | {f(a)} | {f(b)} | {st.mean(a)/st.mean(b):.3f} | {f(c)} | {f(d)} | {st.mean(c)/st.mean(d):.3f} |")
PY
