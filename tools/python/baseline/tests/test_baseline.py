"""The baseline pipeline on two demo frames: persons found, pairs, scores, and the JSON lines schema."""
import json
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

import baseline

SCRIPT = Path(baseline.__file__)
FRAMES = baseline.DEFAULT_FRAMES
TOP_KEYS = {"frame", "source", "width", "height", "persons", "relations", "weights", "timings_us"}
PERSON_KEYS = {"id", "box", "score"}
RELATION_KEYS = {"a", "b", "label", "coarse", "score", "scores"}
TIMING_KEYS = {"decode", "preprocess", "detect", "relate", "render", "total"}
STAGE_KEYS = {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"}


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs baseline.py once over frame_000 and frame_012 (no warm-up) with --out and --json."""
    tmp = tmp_path_factory.mktemp("baseline")
    frames = tmp / "frames"
    frames.mkdir()
    for name in ("frame_000.jpg", "frame_012.jpg"):
        shutil.copy(FRAMES / name, frames / name)
    out = tmp / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--frames-dir", str(frames), "--warmup", "0", "--threads", "1",
         "--out", str(out), "--json"],
        check=True, capture_output=True, text=True,
    )
    summary = json.loads(proc.stdout)
    lines = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    return summary, lines, out


def test_persons_found(run):
    _, lines, _ = run
    by_source = {l["source"]: l for l in lines}
    truth = {f["file"]: f["persons"] for f in json.loads((FRAMES / "ground-truth.json").read_text())["frames"]}
    # frame_012 shows four people and all four are found, nothing else.
    assert len(by_source["frame_012.jpg"]["persons"]) == 4
    # frame_000 shows two people; both are found (IoU >= 0.5 with the annotation). NanoDet-g also
    # fires at 0.43 on the flag behind the astronaut, so it reports 3 persons there (see README).
    f0 = by_source["frame_000.jpg"]["persons"]
    assert len(f0) >= 2
    for gt in truth["frame_000.jpg"]:
        assert max(iou(gt, p["box"]) for p in f0) >= 0.5, gt
    for gt in truth["frame_012.jpg"]:
        assert max(iou(gt, p["box"]) for p in by_source["frame_012.jpg"]["persons"]) >= 0.5, gt


def test_frame_001_finds_exactly_two():
    det = baseline.make_session(baseline.DEFAULT_DETECTOR, 1)
    from PIL import Image
    img = Image.open(FRAMES / "frame_001.jpg").convert("RGB")
    t, sx, sy, ox, oy = baseline.letterbox(img)
    boxes, scores = baseline.detect(det, t, sx, sy, ox, oy, *img.size)
    assert len(boxes) == 2
    assert np.all(np.diff(scores) <= 0), "best first"


def test_every_pair_once_with_scores_summing_to_one(run):
    _, lines, _ = run
    for l in lines:
        n = len(l["persons"])
        pairs = [(r["a"], r["b"]) for r in l["relations"]]
        assert pairs == list(combinations(range(n), 2))
        for r in l["relations"]:
            assert list(r["scores"]) == baseline.LABELS
            assert abs(sum(r["scores"].values()) - 1.0) < 1e-3
            assert r["label"] == max(r["scores"], key=r["scores"].get)
            assert r["score"] == r["scores"][r["label"]]
            assert r["coarse"] == baseline.COARSE[r["label"]]


def test_json_lines_schema(run):
    _, lines, out = run
    assert [l["frame"] for l in lines] == [0, 1]
    assert [l["source"] for l in lines] == ["frame_000.jpg", "frame_012.jpg"]
    for l in lines:
        assert set(l) == TOP_KEYS
        assert (l["width"], l["height"]) == (640, 480)
        assert l["weights"] == "untrained-demo"
        assert [p["id"] for p in l["persons"]] == list(range(len(l["persons"])))
        for p in l["persons"]:
            assert set(p) == PERSON_KEYS and len(p["box"]) == 4 and 0 < p["score"] <= 1
        for r in l["relations"]:
            assert set(r) == RELATION_KEYS
        t = l["timings_us"]
        assert set(t) == TIMING_KEYS
        assert all(isinstance(v, int) and v >= 0 for v in t.values())
        assert t["total"] == sum(t[k] for k in TIMING_KEYS - {"total"})
    assert len(list(out.glob("*.png"))) == 2


def test_summary_json(run):
    summary, _, _ = run
    assert set(summary) == {"frames", "threads", "fps", "stages", "models", "onnxruntime"}
    assert summary["frames"] == 2 and summary["threads"] == 1
    assert set(summary["stages"]) == TIMING_KEYS
    for v in summary["stages"].values():
        assert set(v) == STAGE_KEYS
    assert summary["fps"] > 0
    assert abs(summary["fps"] - 1000.0 / summary["stages"]["total"]["mean_ms"]) < 0.01 * summary["fps"] + 1e-3
    assert summary["models"] == {"detector": "person-detector.onnx", "relation": "gritv2-s.fp32.onnx"}


def test_nms_drops_overlaps_and_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    assert baseline.nms(boxes, scores, 0.45, 8) == [0, 2]
    assert baseline.nms(boxes, scores, 0.45, 1) == [0]
