#!/usr/bin/env bash
# Times kith's models in tract (`kith-model bench`, as the runtime runs them) and in ONNX Runtime
# (tools/python/baseline/ort_bench.py) on the same fixed inputs and threads, in one run, and prints
# one table. Usage: tools/kith-model/bench-compare.sh [RUNS] [THREADS...] (default 20 runs, 1 2 threads).
# Needs the baseline venv (tools/python/baseline/setup.sh) and jq.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-20}"
shift || true
threads=("${@:-1 2}")
read -r -a threads <<< "${threads[*]}"
py=tools/python/.venv-baseline/bin/python
cargo build --release -q -p kith-model
models=(models/person-detector.onnx models/gritv2-s.fp32.onnx models/gritv2-s.int8.onnx)
printf '%-28s %7s %12s %12s %12s %12s %10s\n' model threads tract_med tract_p90 ort_med ort_p90 tract/ort
for t in "${threads[@]}"; do
  for m in "${models[@]}"; do
    tr=$(target/release/kith-model bench "$m" --threads "$t" --runs "$runs" --json)
    ort=$("$py" tools/python/baseline/ort_bench.py "$m" --threads "$t" --runs "$runs" --json)
    echo "$tr" >&2
    echo "$ort" >&2
    printf '%-28s %7s %12s %12s %12s %12s %10s\n' "$(basename "$m")" "$t" \
      "$(jq .median_ms <<< "$tr")" "$(jq .p90_ms <<< "$tr")" \
      "$(jq .median_ms <<< "$ort")" "$(jq .p90_ms <<< "$ort")" \
      "$(jq -n --argjson a "$(jq .median_ms <<< "$tr")" --argjson b "$(jq .median_ms <<< "$ort")" '$a / $b * 100 | round / 100')"
  done
done
