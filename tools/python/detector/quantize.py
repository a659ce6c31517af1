"""Post-training static INT8 quantisation of kith's person detector (NanoDet-g) for tract.

    tools/python/.venv-detector/bin/python tools/python/detector/quantize.py \
        [--input models/person-detector.onnx] [--out models/person-detector.int8.onnx] [--calib N]

Recipe (the GRITv2-S one, tools/python/gritv2/quantize.py and docs/int8.md, for a convolutional graph):
  * the explicit zero Pad in front of each 3x3 convolution (tf2onnx's SAME padding) is folded into the
    convolution's own `pads` first (exact: the padded values are zeros either way), so that the convolution
    reads the int8 tensor directly and no f32 Pad sits between a QuantizeLinear and the QLinearConv; the
    -inf Pad before the max-pool goes into the MaxPool's `pads` the same way (exact; tract's f32 Pad of that
    32x208x208 tensor took about 12 ms a run);
  * onnxruntime.quantization.quantize_static, QuantFormat.QOperator (QLinearConv, which tract lowers to its
    int8 matmul kernels), op_types_to_quantize = Conv only: every other op (LeakyReLU, Concat, Split,
    MaxPool, Resize, the residual Adds, and all of the in-graph post-processing: sigmoid, softmax over the
    bins, the box maths) stays f32 between DequantizeLinear / QuantizeLinear. tract folds the
    DequantizeLinear -> LeakyRelu -> QuantizeLinear chains into i8 lookup tables;
  * the head's three output convolutions (1x1, 128 -> 80 class + 44 bin logits, 2.7 % of the MACs) stay
    f32 (--int8-head quantises them too): on the evaluation set at 320x320 quantising them cost 0.04 of
    recall against FP32, keeping them f32 0.01 (models/MODELS.md);
  * signed int8 activations and weights with zero point 0 (ActivationSymmetric, WeightSymmetric), one scale
    per tensor (per_channel=False), no reduce_range;
  * the graph has no depthwise (group > 1) convolution; any would be left in f32 as for GRITv2-S;
  * MinMax calibration on composed scenes of evaluate.py's generator with seeds 1000+ (the evaluation set
    uses seeds 0..per_type-1, so calibration and evaluation scenes differ; the people and backgrounds come
    from the same public-domain images), letterboxed exactly as kith does.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CALIB_SEED0 = 1000   # evaluate.py's scenes use seeds 0..per_type-1 (16 by default)


def fold_zero_pads(model):
    """Pad(constant 0, spatial only) -> Conv becomes Conv with the pads added to its `pads`, and
    Pad(constant -inf) -> MaxPool becomes MaxPool with them (ONNX MaxPool ignores its padding)."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    drop, folded = set(), 0
    for pad in g.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        if mode != "constant" or len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            if pad.input[2] not in inits:
                continue
            value = float(np.asarray(inits[pad.input[2]]).reshape(-1)[0])
        p = [int(v) for v in inits[pad.input[1]]]
        if len(p) != 8 or p[0] or p[1] or p[4] or p[5] or min(p) < 0:
            continue
        cs = consumers.get(pad.output[0], [])
        # zeros before a Conv; -inf before a MaxPool (whose own padding is ignored = -inf)
        wanted = {0.0: "Conv", float("-inf"): "MaxPool"}.get(value)
        if len(cs) != 1 or cs[0].op_type != wanted:
            continue
        conv = cs[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + p[2], old[1] + p[3], old[2] + p[6], old[3] + p[7]]
        keep = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(keep + [helper.make_attribute("pads", new)])
        conv.input[0] = pad.input[0]
        drop.add(id(pad))
        folded += 1
    nodes = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(nodes)
    model = common.prune(model)
    onnx.checker.check_model(model)
    return model, folded


def calibration_inputs(n: int, size: tuple[int, int], pad: float) -> list[dict]:
    """n letterboxed composed scenes (all six scene types in turn), seeds CALIB_SEED0 + k."""
    import evaluate
    comp = evaluate.Composer()
    h, w = size
    out = []
    for k in range(n):
        kind = evaluate.SCENE_TYPES[k % len(evaluate.SCENE_TYPES)]
        img, _ = comp.scene(kind, CALIB_SEED0 + k)
        x, _ = evaluate.kith_resize(img, w, h, "letterbox", pad)
        out.append({"image": x[None]})
    return out


class ListReader:
    def __init__(self, items):
        self.items, self.i = list(items), 0

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]

    def rewind(self):
        self.i = 0


def head_output_convs(model) -> list[str]:
    """The GFL head's last 1x1 convolutions (one per level, 128 -> 80 class logits + 4x11 distance
    bins, whose output goes to the Split into classes and bins). Kept in f32: their output is what the
    scores and boxes are computed from, and one per-tensor s8 scale for both the class logits and the
    bin logits is coarse; they are 2.7 % of the MACs."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and [c.op_type for c in consumers.get(n.output[0], [])] == ["Split"]]


def grouped_convs(model) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and next((a.i for a in n.attribute if a.name == "group"), 1) > 1]


def quantize(fp32_path: str, out_path: str, n_calib: int = 48, exclude: list[str] | None = None,
             int8_head: bool = False) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(fp32_path)
    meta = {p.key: p.value for p in model.metadata_props}
    (_, _, h, w) = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    model, folded = fold_zero_pads(model)
    # onnxruntime 1.18.1 sets the range of every Softmax output (adjust_tensor_ranges) and fails when that
    # tensor was not calibrated; listing Softmax as a type to quantise makes it calibrated, and excluding
    # the node by name keeps it in f32.
    softmax = [n.name for n in model.graph.node if n.op_type == "Softmax"]
    head = [] if int8_head else head_output_convs(model)
    excl = grouped_convs(model) + head + softmax + list(exclude or [])
    items = calibration_inputs(n_calib, (h, w), float(meta.get("kith.pad_value", 114 / 255)))
    with tempfile.TemporaryDirectory() as td:
        pre = os.path.join(td, "folded.onnx")
        onnx.save(model, pre)
        tmp = os.path.join(td, "q.onnx")
        quantize_static(
            pre, tmp, ListReader(items),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["Conv"] + (["Softmax"] if softmax else []),
            per_channel=False,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excl,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        q = onnx.load(tmp)
    q = common.rename_tensors(q, "")
    del q.metadata_props[:]
    meta["kith.precision"] = "int8"
    meta["kith.quantisation"] = (f"onnxruntime 1.18.1 quantize_static QOperator, QLinearConv s8/s8 symmetric "
                                 f"per-tensor, MinMax over {n_calib} composed scenes (seeds {CALIB_SEED0}+); "
                                 f"f32: every op but Conv" + ("" if int8_head else ", the head's output convs"))
    for k in sorted(meta):
        p = q.metadata_props.add()
        p.key, p.value = k, meta[k]
    q.producer_name, q.producer_version, q.doc_string = "kith-detector-tools", "1", ""
    q.graph.doc_string = ""
    problems = check_int8_graph(q)
    if problems:
        raise RuntimeError("INT8 detector graph is not safe for tract: " + "; ".join(problems))
    onnx.checker.check_model(q, full_check=True)
    common.save(q, out_path)
    ops: dict[str, int] = {}
    for n in q.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"folded_pads": folded, "excluded": excl, "ops": dict(sorted(ops.items()))}


INT8_OPS = {"QLinearConv", "QuantizeLinear", "DequantizeLinear"}


def check_int8_graph(q) -> list[str]:
    """Standard ops only, s8 zero points 0 with per-tensor scales, no DQ -> Softmax -> Q chain."""
    from onnx import numpy_helper

    problems = []
    bad = sorted({n.op_type for n in q.graph.node if n.op_type not in common.TRACT_OK_OPS | INT8_OPS
                  or n.domain not in ("", "ai.onnx")})
    if bad:
        problems.append(f"ops outside the allowed set: {bad}")
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    for n in q.graph.node:
        pairs = {"QLinearConv": [(1, 2), (4, 5), (6, 7)], "QuantizeLinear": [(1, 2)],
                 "DequantizeLinear": [(1, 2)]}.get(n.op_type, [])
        for s_i, z_i in pairs:
            if len(n.input) <= z_i or n.input[z_i] not in inits:
                problems.append(f"{n.name}: no constant zero point")
                continue
            z, s = inits[n.input[z_i]], inits.get(n.input[s_i])
            if z.size != 1 or s is None or s.size != 1:
                problems.append(f"{n.name}: per-channel or non-constant scale/zero point")
            elif z.dtype != np.int8 or int(z.reshape(-1)[0]) != 0:
                problems.append(f"{n.name}: zero point {z.reshape(-1)[0]} of type {z.dtype}")
    producer = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            cur = producer.get(n.input[0])
            while cur is not None and cur.op_type not in ("DequantizeLinear",):
                if cur.op_type in ("Softmax",):
                    problems.append(f"Softmax before {n.name}")
                    break
                cur = producer.get(cur.input[0]) if cur.input else None
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default=os.path.join(common.MODELS, "person-detector.onnx"))
    ap.add_argument("--out", default=os.path.join(common.MODELS, "person-detector.int8.onnx"))
    ap.add_argument("--calib", type=int, default=48, help="calibration scenes")
    ap.add_argument("--exclude", action="append", default=[], help="Conv node name to keep in f32")
    ap.add_argument("--int8-head", action="store_true", help="quantise the head's output convolutions too")
    a = ap.parse_args(argv)
    info = quantize(a.input, a.out, a.calib, a.exclude, a.int8_head)
    print(info)
    print(a.out, os.path.getsize(a.out), common.sha256_file(a.out))


if __name__ == "__main__":
    main()
