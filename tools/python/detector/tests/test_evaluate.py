"""The recall evaluation runs, and kith's preprocessing is reproduced as runtime/src/image.rs does it."""
import numpy as np
from PIL import Image

import evaluate


def test_annotations_inside_sources():
    for name, (path, box) in evaluate.SOURCES.items():
        w, h = Image.open(path()).size
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h, name


def test_letterbox_placement_like_kith():
    src = np.zeros((480, 640, 3), np.uint8)
    x, (sx, sy, ox, oy) = evaluate.kith_resize(src, 416, 416, "letterbox", 0.25)
    assert x.shape == (3, 416, 416)
    assert (ox, oy) == (0.0, 52.0) and abs(sx - 0.65) < 1e-6 and abs(sy - 0.65) < 1e-6
    assert (x[:, :52] == np.float32(0.25)).all() and (x[:, 52 + 312:] == np.float32(0.25)).all()
    assert (x[:, 52:52 + 312] == 0).all()


def test_stretch_same_size_is_identity():
    src = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    x, place = evaluate.kith_resize(src, 40, 30, "stretch", 0.0)
    np.testing.assert_allclose(x, src.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_recall_evaluation_runs(shipped, capsys):
    rows = evaluate.main(["--per-type", "1", "--latency-runs", "2",
                          "--model", f"shipped={shipped}"])
    (label, res, lat, det), = rows
    for c in evaluate.CATEGORIES:
        rec, hit, tot = res[c]
        assert tot == 0 or 0.0 <= rec <= 1.0
    assert res["all"][2] >= 6
    assert res["normal"][0] >= 0.5   # normal-sized people are found
    assert lat > 0
    assert "| shipped |" in capsys.readouterr().out
