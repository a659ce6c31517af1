"""End to end on a tiny PISC-format set generated here: train a few steps (loss goes down), evaluate
(accuracy, mAP), export, quantise, and load the exports in tract (Python bindings, and kith-model when built)."""
import argparse
import json
import math
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest

import onnx_utils as U
from data import PiscDataset, make_synthetic_pisc, split_prefix
from evaluate import evaluate_model
from model import load_checkpoint
from quantize import SyntheticReader, check_int8_graph, compare, comparison_cases, depthwise_convs, quantize
from train import build_argparser, train

KITH_MODEL = U.REPO_ROOT / "target" / "release" / "kith-model"


def kith_model_info(path):
    """`cargo run --release -p kith-model -- info FILE` (the lead's Rust tool), or skip."""
    if shutil.which("cargo") is None:
        pytest.skip("cargo not on PATH: cannot run kith-model")
    if not KITH_MODEL.exists():
        pytest.skip(f"{KITH_MODEL} not built yet (cargo build --release -p kith-model)")
    r = subprocess.run(["cargo", "run", "--release", "-q", "-p", "kith-model", "--", "info", str(path)],
                       cwd=U.REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pisc")
    make_synthetic_pisc(root, images_per_split=(2, 2, 2), seed=3)
    out = tmp_path_factory.mktemp("run")
    args = build_argparser().parse_args([
        "--data-root", str(root), "--config", "test-tiny", "--epochs", "5", "--batch-size", "2",
        "--lr", "1e-3", "--backbone-lr", "1e-3", "--grad-clip", "1.0", "--no-hflip", "--no-shuffle",
        "--num-workers", "0", "--device", "cpu", "--eval-split", "none", "--log-every", "1",
        "--out", str(out / "ck.pt"), "--export", str(out / "m.fp32.onnx"),
    ])
    hist = train(args)
    return root, out, hist


def test_loss_goes_down(trained):
    _, _, hist = trained
    loss = hist["loss"]
    assert len(loss) == 5 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < 0.8 * loss[0], loss


def test_evaluation_metrics(trained):
    root, out, _ = trained
    model = load_checkpoint(str(out / "ck.pt"))
    ds = PiscDataset(str(root), split_prefix("fine", "test"), img_size=model.cfg.img_size)
    m = evaluate_model(model, ds, batch_size=2)
    assert m["pairs"] > 0
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["mAP"] <= 1.0
    assert len(m["ap"]) == 6


def test_export_quantize_and_tract(trained):
    _, out, hist = trained
    fp32 = out / "m.fp32.onnx"
    assert hist["export"]["max_abs_diff_torch_vs_ort"] < 1e-4
    assert U.get_metadata(onnx.load(str(fp32)))["kith.weights"] == "trained:ck.pt"
    int8 = out / "m.int8.onnx"
    size, n = 112, 8
    quantize(fp32, int8, SyntheticReader(4, size=size, num_persons=n), narrow_weights=True)
    q = onnx.load(str(int8))
    assert check_int8_graph(q) == []
    ops = U.op_histogram(q)
    assert ops.get("QLinearMatMul", 0) > 0 and ops.get("QLinearConv", 0) > 0
    # every depthwise conv stays FP32 (tract runs int8 grouped convs slowly), every other conv is int8
    depthwise = depthwise_convs(onnx.load(str(fp32)))
    assert depthwise and ops.get("Conv", 0) == len(depthwise)
    assert all(a.i == 1 for n in q.graph.node if n.op_type == "QLinearConv" for a in n.attribute
               if a.name == "group")
    assert U.get_metadata(q)["kith.precision"] == "int8"
    assert U.get_metadata(q)["kith.int8_narrow_weights"] == "allowed"
    rep = compare(fp32, int8, comparison_cases(n=3, size=size, num_persons=n), with_tract=U.tract_available())
    assert rep["pairs"] > 0 and np.isfinite(rep["max_abs_diff"])
    if U.tract_available():
        # the INT8 graph runs in tract and agrees with onnxruntime's INT8 up to requantisation rounding
        assert rep["tract_vs_ort_int8_max_abs_diff"] < 0.5


@pytest.mark.parametrize("which", ["e2e-fp32", "e2e-int8", "shipped-fp32", "shipped-int8"])
def test_kith_model_loads(trained, which):
    _, out, _ = trained
    path = {"e2e-fp32": out / "m.fp32.onnx", "e2e-int8": out / "m.int8.onnx",
            "shipped-fp32": U.FP32_PATH, "shipped-int8": U.INT8_PATH}[which]
    if not path.exists():
        pytest.skip(f"{path} does not exist")
    text = kith_model_info(path)
    assert "image" in text and "logits" in text, text
