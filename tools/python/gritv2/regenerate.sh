#!/usr/bin/env bash
# Regenerate the shipped GRITv2-S files (deterministic: same sha256 on every run with the pinned venv):
#   models/gritv2-s.fp32.onnx       seeded untrained-demo weights, exported from PyTorch
#   models/gritv2-s.int8.onnx       post-training INT8 (QOperator, s8, zero point 0, per tensor)
#   models/gritv2-s.reference.json  fixed input + torch FP32 logits + onnxruntime INT8 logits
# then prints sizes and sha256 for models/MODELS.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-gritv2"
[ -x "$venv/bin/python" ] || bash "$here/setup.sh"
py="nice -n 10 $venv/bin/python"
cd "$here"
$py export.py
$py quantize.py --narrow-weights --report "${GRITV2_REPORT:-/tmp/gritv2-int8-report.json}"
cd "$here/../../.."
for f in models/gritv2-s.fp32.onnx models/gritv2-s.int8.onnx models/gritv2-s.reference.json; do
  echo "| $(basename "$f") | $(stat -c %s "$f") | $(sha256sum "$f" | cut -d' ' -f1) |"
done
