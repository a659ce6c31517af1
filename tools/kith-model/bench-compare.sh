#!/usr/bin/env bash
# Times kith's models in tract (`kith-model bench`, as the runtime runs them) and in ONNX Runtime
# (tools/python/baseline/ort_bench.py) on the same fixed inputs and threads, in one run, and prints
# one table plus the INT8 / FP32 ratio of each runtime. tract runs the three models interleaved in
# one process (one run of each in turn), so their ratios hold on a busy machine.
# Usage: tools/kith-model/bench-compare.sh [RUNS] [THREADS...] (default 20 runs, 1 2 threads).
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
  mapfile -t tract < <(target/release/kith-model bench "${models[@]}" --threads "$t" --runs "$runs" --json)
  declare -A tr_med=() ort_med=()
  for i in "${!models[@]}"; do
    m="${models[$i]}"
    tr="${tract[$i]}"
    ort=$("$py" tools/python/baseline/ort_bench.py "$m" --threads "$t" --runs "$runs" --json)
    echo "$tr" >&2
    echo "$ort" >&2
    tr_med[$m]=$(jq .median_ms <<< "$tr")
    ort_med[$m]=$(jq .median_ms <<< "$ort")
    printf '%-28s %7s %12s %12s %12s %12s %10s\n' "$(basename "$m")" "$t" \
      "${tr_med[$m]}" "$(jq .p90_ms <<< "$tr")" "${ort_med[$m]}" "$(jq .p90_ms <<< "$ort")" \
      "$(jq -n --argjson a "${tr_med[$m]}" --argjson b "${ort_med[$m]}" '$a / $b * 100 | round / 100')"
  done
  ratio() { jq -n --argjson a "$1" --argjson b "$2" '$a / $b * 1000 | round / 1000'; }
  echo "threads $t: INT8 / FP32 median: tract $(ratio "${tr_med[models/gritv2-s.int8.onnx]}" "${tr_med[models/gritv2-s.fp32.onnx]}"), ONNX Runtime $(ratio "${ort_med[models/gritv2-s.int8.onnx]}" "${ort_med[models/gritv2-s.fp32.onnx]}")"
done
