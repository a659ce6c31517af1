"""The INT8 detector (quantize.py): contract, tract-safety, determinism, recall against FP32."""
import os

import numpy as np
import onnx
import onnxruntime as ort

import common
import evaluate
import quantize


def test_int8_file_contract(shipped, shipped_int8):
    q, f = onnx.load(shipped_int8), onnx.load(shipped)
    onnx.checker.check_model(q, full_check=True)
    assert quantize.check_int8_graph(q) == []
    assert [i.name for i in q.graph.input] == ["image"]
    assert [o.name for o in q.graph.output] == ["boxes", "scores"]
    dims = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(q.graph.input[0]) == dims(f.graph.input[0]) == [1, 3, 416, 416]
    assert [dims(o) for o in q.graph.output] == [dims(o) for o in f.graph.output]
    mq = {p.key: p.value for p in q.metadata_props}
    mf = {p.key: p.value for p in f.metadata_props}
    assert mq["kith.precision"] == "int8"
    for k in ("kith.kind", "kith.decoder", "kith.name", "kith.resize", "kith.pad_value"):
        assert mq[k] == mf[k], k
    ops = [n.op_type for n in q.graph.node]
    # every convolution int8 but the head's three output convolutions; no Pad left before them
    assert ops.count("QLinearConv") == 31 and ops.count("Conv") == 3
    assert "Pad" not in ops
    assert os.path.getsize(shipped_int8) < 0.3 * os.path.getsize(shipped)


def test_int8_regeneration_is_deterministic(shipped_int8, tmp_path):
    out = str(tmp_path / "again.int8.onnx")
    quantize.main(["--out", out])
    assert common.sha256_file(out) == common.sha256_file(shipped_int8)


def test_int8_in_tract_close_to_fp32(shipped, shipped_int8):
    import tract
    img, _ = evaluate.Composer().scene("normal", 3)
    x, _ = evaluate.kith_resize(img, 416, 416, "letterbox", 0.447)
    x = x[None]
    rb, rs = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"]).run(None, {"image": x})
    run = tract.onnx().load(shipped_int8).into_model().into_runnable()
    qb, qs = [o.to_numpy() for o in run.run([x])]
    assert np.isfinite(qb).all() and np.isfinite(qs).all()
    assert rs.max() > 0.5
    top = np.argsort(-rs[0])[:5]      # the FP32 file's best cells: INT8 scores them alike
    # measured: up to 0.10 lower (0.42 against 0.52) on these raw cells, before NMS
    assert np.abs(qs[0, top] - rs[0, top]).max() < 0.15
    assert np.abs(qb[0, top] - rb[0, top]).max() < 8.0   # input pixels of 416


def test_int8_recall_within_002_of_fp32(shipped, shipped_int8):
    """The issue's criterion on the composed evaluation set, run by tract as kith runs it: INT8
    recall no more than 0.02 below FP32 overall and per category (16 scenes per type)."""
    scenes = evaluate.build_scenes(16)
    r32 = evaluate.evaluate(evaluate.OnnxDetector(shipped, backend="tract"), scenes)
    r8 = evaluate.evaluate(evaluate.OnnxDetector(shipped_int8, backend="tract"), scenes)
    for c in evaluate.CATEGORIES:
        assert r8[c][0] >= r32[c][0] - 0.02, (c, r8[c], r32[c])
