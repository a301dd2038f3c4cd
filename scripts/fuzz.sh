#!/usr/bin/env bash
# Fuzzes nanolab's parsers of untrusted files with cargo-fuzz (libFuzzer):
#   gguf_header       any bytes as a GGUF model/adapter header (src/gguf)
#   peft_config       any text as a PEFT adapter_config.json (src/adapters/peft_files.rs)
#   safetensors_lora  any bytes as a PEFT adapter_model.safetensors (src/adapters/peft_files.rs)
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
# Seeds are committed in tests/fuzz/corpus/<target>; new inputs found go to target/fuzz/corpus,
# crashes to target/fuzz/artifacts. cargo-fuzz wants a nightly toolchain; on stable,
# RUSTC_BOOTSTRAP=1 unlocks the same -Z flags (AddressSanitizer included).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(gguf_header peft_config safetensors_lora)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$PWD/target/fuzz/build
for t in "${TARGETS[@]}"; do
  mkdir -p "target/fuzz/corpus/$t" "target/fuzz/artifacts/$t"
  echo "== $t: ${SECS}s"
  log="target/fuzz/$t.log"
  status=0
  cargo fuzz run --fuzz-dir tests/fuzz "$t" "target/fuzz/corpus/$t" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="target/fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|SUMMARY|panicked|deadly signal" "$log" || true
  if ls "target/fuzz/artifacts/$t"/crash-* "target/fuzz/artifacts/$t"/oom-* "target/fuzz/artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "$t: FOUND a failing input in target/fuzz/artifacts/$t" >&2
    exit 1
  fi
  # A build failure or a run that never finished is a failure too, not a quiet pass.
  if ((status != 0)) || ! grep -qE "Done [0-9]+ runs" "$log"; then
    echo "$t: the fuzzer did not run to its time limit (exit status $status); see $log" >&2
    tail -20 "$log" >&2
    exit 1
  fi
done
