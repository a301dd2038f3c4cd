#!/usr/bin/env bash
# Load test of `nanolab serve` against llama.cpp's own llama-server, built from the same llama.cpp
# tree as scripts/llama-tools.sh: REQUESTS chat requests (streamed, greedy, MAX_TOKENS each) from
# CONCURRENCY clients using the official openai client, against each server in turn, alternating
# the order over ROUNDS rounds in one run. Prints requests answered, latency p50/p95, aggregate
# completion tok/s and the ratio nanolab / llama-server. Both servers listen on 127.0.0.1 only.
# Both servers run with --parallel PARALLEL (default 1): up to PARALLEL generations at once,
# decoded in one batch (nanolab: requests on one model without adapters share a batch, see
# engine/worker/pool.rs; llama-server: its slots).
set -euo pipefail
cd "$(dirname "$0")/.."
# nanolab loads plain weight buffers where llama.cpp's AMX kernels run (they crash here; see
# engine::weight_repacking), so the baseline does too.
NOREPACK=(); grep -qw amx_int8 /proc/cpuinfo && NOREPACK=(--no-repack)
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REQUESTS=${REQUESTS:-200}
CONCURRENCY=${CONCURRENCY:-16}
MAX_TOKENS=${MAX_TOKENS:-64}
ROUNDS=${ROUNDS:-2}
PARALLEL=${PARALLEL:-1}
CTX=${CTX:-2048}
PY=target/py-openai/bin/python
[[ -x $PY ]] || scripts/setup.sh --test
BIN=$(scripts/llama-tools.sh llama-server)
cargo build --release -q
THREADS=$(nproc)
echo "llama-server: $(cat target/llama-tools/version.txt); both servers with --parallel $PARALLEL"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load: $REQUESTS requests, $CONCURRENCY concurrent clients, $MAX_TOKENS tokens each, greedy"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 600); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.1; done; echo "server at $1 did not come up" >&2; return 1; }
results=()
run_nanolab() {
  local p; p=$(port)
  NANOLAB_REGISTRY=$(mktemp -d)/registry.json target/release/nanolab serve --model "$MODEL" --port "$p" \
    --ctx "$CTX" --threads "$THREADS" --parallel "$PARALLEL" --queue $((REQUESTS + 1)) >/dev/null 2>&1 &
  local pid=$!
  wait_up "http://127.0.0.1:$p"
  results+=("nanolab $($PY benches/serve_load.py "http://127.0.0.1:$p/v1" "$(basename "$MODEL" .gguf)" "$REQUESTS" "$CONCURRENCY" "$MAX_TOKENS")")
  kill "$pid"; wait "$pid" || true
}
run_llama_server() {
  local p; p=$(port)
  "$BIN/llama-server" "${NOREPACK[@]}" -m "$MODEL" --host 127.0.0.1 --port "$p" -c $((CTX * PARALLEL)) --parallel "$PARALLEL" \
    -t "$THREADS" --no-webui --no-cache-prompt >/dev/null 2>&1 &
  local pid=$!
  wait_up "http://127.0.0.1:$p"
  results+=("llama-server $($PY benches/serve_load.py "http://127.0.0.1:$p/v1" any "$REQUESTS" "$CONCURRENCY" "$MAX_TOKENS")")
  kill "$pid"; wait "$pid" || true
}
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then run_nanolab; run_llama_server; else run_llama_server; run_nanolab; fi
done
out=target/serve-load-$(date +%Y%m%d-%H%M%S).txt
printf '%s\n' "${results[@]}" > "$out"
echo "raw results: $out"
python3 - "$out" <<'PY'
import json, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    name, js = line.split(" ", 1)
    rows.setdefault(name, []).append(json.loads(js))
print("| server | answered | errors | latency p50 s | latency p95 s | TTFT p50 s | aggregate tok/s |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, rs in rows.items():
    m = lambda k: st.mean(r[k] for r in rs)
    answered = sum(r["answered"] for r in rs)
    asked = sum(r["requests"] for r in rs)
    errors = sum(r["errors"] for r in rs)
    print(f"| {name} | {answered}/{asked} | {errors} | {m('latency_p50_s'):.2f} | {m('latency_p95_s'):.2f} | "
          f"{m('ttft_p50_s'):.2f} | {m('aggregate_tokens_per_sec'):.1f} |")
    for r in rs:
        for e in r["first_errors"]:
            print(f"  {name} error: {e}")
a = st.mean(r["aggregate_tokens_per_sec"] for r in rows["nanolab"])
b = st.mean(r["aggregate_tokens_per_sec"] for r in rows["llama-server"])
print(f"\nnanolab / llama-server aggregate tok/s: {a / b:.3f}")
PY
