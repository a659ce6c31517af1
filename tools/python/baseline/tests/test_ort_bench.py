"""ort_bench.py: JSON output keys, and the GRITv2-S inputs are exactly the reference ones."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import ort_bench

SCRIPT = Path(ort_bench.__file__)
MODELS = ort_bench.REPO / "models"


def test_json_keys_and_positive_numbers():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(MODELS / "person-detector.onnx"), "--runs", "2", "--warmup", "1", "--json"],
        check=True, capture_output=True, text=True,
    )
    r = json.loads(proc.stdout)
    assert list(r) == ["file", "threads", "runs", "median_ms", "p90_ms", "onnxruntime"]
    assert r["threads"] == 1 and r["runs"] == 2
    assert r["median_ms"] > 0 and r["p90_ms"] > 0 and r["p90_ms"] >= r["median_ms"]


def test_gritv2_fixed_inputs_give_the_reference_logits():
    ref = json.loads(ort_bench.REFERENCE_JSON.read_text())
    session = ort_bench.make_session(MODELS / "gritv2-s.fp32.onnx", 1)
    assert ort_bench.is_gritv2(session)
    (logits,) = session.run(["logits"], ort_bench.fixed_inputs(session))
    assert np.abs(logits - np.asarray(ref["fp32"]["logits"], dtype=np.float32)).max() < 1e-4


def test_reference_image_formula():
    img = ort_bench.reference_image()
    assert img.shape == (1, 3, 224, 224) and img.dtype == np.float32
    for c, y, x in [(0, 0, 0), (1, 5, 7), (2, 223, 100)]:
        assert img[0, c, y, x] == np.float32(((c * 61 + y * 7 + x * 13) % 256) / 255.0)


def test_pattern_for_other_models_is_deterministic():
    a = ort_bench.pattern_input([1, 3, 416, 416], np.float32)
    assert np.array_equal(a, ort_bench.reference_image((1, 3, 416, 416)))
    b = ort_bench.pattern_input(["batch", 10], np.float32)
    assert b.shape == (1, 10) and b[0, 3] == np.float32(39 / 255.0)
