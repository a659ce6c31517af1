#!/usr/bin/env bash
# Runs kith-bench and the Python + ONNX Runtime baseline on the same demo frames, models and thread
# count, one after the other, and prints kith's end-to-end frames/s divided by the baseline's.
# Usage: tools/bench-vs-python.sh [THREADS] [FRAMES] [KITH-BENCH FLAGS...]   (defaults: 1 thread,
# 32 frames; e.g. --pipelined to force kith's pipelining, which the demo board already turns on)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
frames="${2:-32}"
shift $(( $# < 2 ? $# : 2 ))
out="${TMPDIR:-/tmp}/kith-bench-vs-python"
rm -rf "$out"
mkdir -p "$out"
[ -x tools/python/.venv-baseline/bin/python ] || bash tools/python/baseline/setup.sh
relation="$(sed -n 's/^model = "\(.*gritv2[^"]*\)"/\1/p' board-configs/demo.toml)"
cargo run --release -q -p kith-bench -- --board board-configs/demo.toml --threads "$threads" \
  --frames "$frames" --warmup 2 --out "$out/kith" "$@" > "$out/kith.txt"
tools/python/.venv-baseline/bin/python tools/python/baseline/baseline.py --threads "$threads" \
  --frames "$frames" --warmup 2 --relation-model "board-configs/$relation" --json > "$out/python.json"
python3 - "$out/kith/report.json" "$out/python.json" <<'PY'
import json, sys
kith = json.load(open(sys.argv[1]))
py = json.load(open(sys.argv[2]))
print(f"{'stage':<11} {'kith ms':>9} {'python ms':>10} {'kith/python':>12}")
for stage in ["decode", "preprocess", "detect", "relate", "render", "total"]:
    k = kith["stages"][stage]["mean_us"] / 1e3
    p = py["stages"][stage]["mean_ms"]
    print(f"{stage:<11} {k:>9.2f} {p:>10.2f} {k / p if p else float('nan'):>12.2f}")
print(f"frames/s: kith {kith['frames_per_second']:.2f}, python {py['fps']:.2f}, "
      f"kith / python = {kith['frames_per_second'] / py['fps']:.2f} "
      f"({kith['run']['threads']} thread(s), {kith['run']['frames']} frames"
      f"{', kith pipelined' if kith['run'].get('pipelined') else ''})")
PY
