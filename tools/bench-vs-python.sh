#!/usr/bin/env bash
# kith against the same job written as a plain Python program (tools/python/baseline/baseline.py:
# ONNX Runtime, numpy, Pillow), on the same demo frames and machine, each given its best setting:
#   * Python: ONNX Runtime with 1 or 2 intra-op threads, whichever runs the whole job faster here
#     (both measured), and per model the ONNX file that is fastest *for ONNX Runtime* (each
#     candidate timed with ort_bench.py at that thread count; e.g. FP32 where its INT8 is slower);
#   * kith: its shipped demo board (board-configs/demo.toml: threads, pipelining, start-up rule).
# Prints per stage kith ms, Python ms and their ratio, then frames/s of both and kith / Python.
# Usage: tools/bench-vs-python.sh [FRAMES] [KITH-BENCH FLAGS...]   (default 32 frames)
set -euo pipefail
cd "$(dirname "$0")/.."
frames="${1:-32}"
shift $(( $# < 1 ? $# : 1 ))
out="${TMPDIR:-/tmp}/kith-bench-vs-python"
rm -rf "$out"
mkdir -p "$out"
[ -x tools/python/.venv-baseline/bin/python ] || bash tools/python/baseline/setup.sh
py=tools/python/.venv-baseline/bin/python
target="${CARGO_TARGET_DIR:-target}"
# The build `cargo test --workspace --release` makes (it includes kith-bench): the same features
# as the tests, so tract is not compiled a second time.
cargo test --workspace --release --no-run -q
"$target/release/kith-bench" --board board-configs/demo.toml --frames "$frames" --warmup 2 \
  --out "$out/kith" "$@" > "$out/kith.txt"

# The fastest ONNX file of a model for ONNX Runtime at $1 threads, among the files given after it.
fastest_file() {
  local threads="$1" best="" best_ms="" file ms
  shift
  for file in "$@"; do
    [ -f "$file" ] || continue
    ms="$("$py" tools/python/baseline/ort_bench.py "$file" --threads "$threads" --runs 10 --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["median_ms"])')"
    echo "  onnxruntime, $threads thread(s): $file $ms ms (median)" >&2
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(not $ms < $best_ms)"; then
      best="$file" best_ms="$ms"
    fi
  done
  echo "$best"
}

for threads in 1 2; do
  detector="$(fastest_file "$threads" models/person-detector.int8.onnx models/person-detector.onnx)"
  relation="$(fastest_file "$threads" models/gritv2-s.int8.onnx models/gritv2-s.fp32.onnx)"
  "$py" tools/python/baseline/baseline.py --threads "$threads" --frames "$frames" --warmup 2 \
    --detector-model "$detector" --relation-model "$relation" --json > "$out/python-$threads.json"
done

python3 - "$out/kith/report.json" "$out/python-1.json" "$out/python-2.json" <<'PY'
import json, sys
kith = json.load(open(sys.argv[1]))
runs = [json.load(open(p)) for p in sys.argv[2:]]
for r in runs:
    print(f"python with {r['threads']} onnxruntime thread(s): {r['fps']:.2f} frames/s "
          f"({r['models']['detector']} + {r['models']['relation']})")
py = max(runs, key=lambda r: r["fps"])
models = {m["role"]: m["file"].rsplit("/", 1)[-1] for m in kith["models"]}
print(f"kith: {kith['run']['board']}, {kith['run']['threads']} thread(s) per model"
      f"{', pipelined' if kith['run'].get('pipelined') else ''}, "
      f"{models.get('detector')} + {models.get('relation')}")
print(f"python: {py['threads']} onnxruntime thread(s), "
      f"{py['models']['detector']} + {py['models']['relation']}, onnxruntime {py['onnxruntime']}")
print(f"{'stage':<11} {'kith ms':>9} {'python ms':>10} {'kith/python':>12}")
for stage in ["decode", "preprocess", "detect", "relate", "render", "total"]:
    k = kith["stages"][stage]["mean_us"] / 1e3
    p = py["stages"][stage]["mean_ms"]
    print(f"{stage:<11} {k:>9.2f} {p:>10.2f} {k / p if p else float('nan'):>12.2f}")
print(f"frames/s: kith {kith['frames_per_second']:.2f} (wall clock), python {py['fps']:.2f} "
      f"(1 / mean total), kith / python = {kith['frames_per_second'] / py['fps']:.2f} "
      f"({kith['run']['frames']} frames)")
PY
