"""ONNX helpers shared by export.py, quantize.py and the tests: metadata, MAC counting, the
DequantizeLinear -> Softmax/LayerNorm -> QuantizeLinear checker, reference inputs, tract runner."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]
MODELS_DIR = REPO_ROOT / "models"
FP32_PATH = MODELS_DIR / "gritv2-s.fp32.onnx"
INT8_PATH = MODELS_DIR / "gritv2-s.int8.onnx"
REFERENCE_PATH = MODELS_DIR / "gritv2-s.reference.json"

VERSION = "0.1.0"
INPUT_NAMES = ["image", "boxes", "mask"]
OUTPUT_NAME = "logits"
NUM_PERSONS = 8
IMG_SIZE = 224

IMAGE_FORMULA = "image[0,c,y,x] = ((c*61 + y*7 + x*13) % 256) / 255.0"


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata(precision: str, weights: str = "untrained-demo", name: str = "gritv2-s",
             num_classes: int = 6) -> dict:
    from model import COARSE_LABELS, COARSE_OF_FINE, FINE_LABELS

    labels, coarse = (FINE_LABELS, COARSE_OF_FINE) if num_classes == 6 else (COARSE_LABELS, COARSE_LABELS)

    return {
        "kith.kind": "relation",
        "kith.name": name,
        "kith.version": VERSION,
        "kith.weights": weights,
        "kith.labels": ",".join(labels),
        "kith.coarse_labels": ",".join(coarse),
        "kith.precision": precision,
    }


def set_metadata(model, props: dict) -> None:
    """Replace metadata_props with `props` (sorted, so files are reproducible)."""
    del model.metadata_props[:]
    for k in sorted(props):
        e = model.metadata_props.add()
        e.key, e.value = k, str(props[k])


def get_metadata(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


# ---------------------------------------------------------------- reference inputs
def reference_image(size: int = IMG_SIZE) -> np.ndarray:
    c = np.arange(3).reshape(3, 1, 1)
    y = np.arange(size).reshape(1, size, 1)
    x = np.arange(size).reshape(1, 1, size)
    img = ((c * 61 + y * 7 + x * 13) % 256).astype(np.float32) / np.float32(255.0)
    return img[None].astype(np.float32)


REFERENCE_BOXES = [
    [0.05, 0.10, 0.30, 0.95],
    [0.25, 0.15, 0.50, 0.90],
    [0.45, 0.05, 0.70, 0.80],
    [0.65, 0.20, 0.95, 0.98],
    [0.10, 0.50, 0.40, 0.99],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
]
REFERENCE_MASK = [1, 1, 1, 1, 1, 0, 0, 0]


def reference_inputs() -> dict:
    return {
        "image": reference_image(),
        "boxes": np.array([REFERENCE_BOXES], dtype=np.float32),
        "mask": np.array([REFERENCE_MASK], dtype=np.float32),
    }


def synthetic_inputs(seed: int, persons: int | None = None, size: int = IMG_SIZE,
                     num_persons: int = NUM_PERSONS) -> dict:
    """Deterministic synthetic frame: smooth colour gradients + blobs + noise, and `persons` random boxes.

    Used for calibration and for the INT8-vs-FP32 comparison. numpy's PCG64 with a fixed seed is stable
    across numpy versions for the generator methods used here.
    """
    rng = np.random.default_rng(seed)
    n = int(persons if persons is not None else rng.integers(2, num_persons + 1))
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    img = np.zeros((3, size, size), dtype=np.float64)
    for ch in range(3):
        a, b, p = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        img[ch] = 0.5 + 0.3 * np.sin(2 * np.pi * (a * xx + b * yy) + p)
    boxes = np.zeros((num_persons, 4), dtype=np.float32)
    for i in range(n):
        w, h = rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.9)
        x1, y1 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        boxes[i] = [x1, y1, x1 + w, y1 + h]
        colour = rng.uniform(0, 1, size=3)
        inside = (xx >= x1) & (xx <= x1 + w) & (yy >= y1) & (yy <= y1 + h)
        for ch in range(3):
            img[ch][inside] = 0.5 * img[ch][inside] + 0.5 * colour[ch]
    img += rng.normal(0, 0.03, size=img.shape)
    img = np.clip(img, 0, 1).astype(np.float32)[None]
    mask = np.zeros((1, num_persons), dtype=np.float32)
    mask[0, :n] = 1
    return {"image": img, "boxes": boxes[None], "mask": mask}


def valid_pairs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.asarray(mask).reshape(-1)
    idx = [i for i in range(len(m)) if m[i] > 0.5]
    return [(i, j) for i in idx for j in idx if i < j]


# ---------------------------------------------------------------- graph analysis
def _shape_of(vi) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            return None
    return dims


def _runtime_shapes(model, names: list[str], elem_types: dict) -> dict:
    """Shapes of intermediate tensors by running the graph once in onnxruntime on a synthetic input."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n not in have]
    for n in wanted:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, elem_types.get(n, 1), None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    size, n = dims["image"][2], dims["mask"][1]
    inputs = synthetic_inputs(0, persons=min(n, 5), size=size, num_persons=n)
    outs = sess.run(wanted, inputs)
    return {n: list(v.shape) for n, v in zip(wanted, outs)}


def count_macs(model_or_path) -> dict:
    """ONNX-based MAC counter over MatMul / Gemm / Conv (+ their QLinear and Integer forms).

    Shapes come from onnx shape inference (with data propagation); tensors whose shapes it cannot infer
    (TinyViT's traced window-padding arithmetic) are measured by one onnxruntime run on a synthetic
    input (shapes are fixed, so any input gives the same count). Element-wise ops, softmax and norms are not counted. One MAC = one multiply-accumulate."""
    import onnx

    model = onnx.load(str(model_or_path)) if not hasattr(model_or_path, "graph") else model_or_path
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes, elem_types = {}, {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        elem_types[vi.name] = vi.type.tensor_type.elem_type
        s = _shape_of(vi)
        if s is not None:
            shapes[vi.name] = s
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    def operands(node):
        op = node.op_type
        if op in ("MatMul", "QLinearMatMul", "MatMulInteger", "Gemm"):
            return [node.input[0], node.output[0]]
        if op == "QLinearConv":
            return [node.input[3], node.output[0]]
        if op in ("Conv", "ConvInteger"):
            return [node.input[1], node.output[0]]
        return []

    missing = [t for node in g.node for t in operands(node) if t not in shapes]
    if missing:
        shapes.update(_runtime_shapes(model, missing, elem_types))
    total = 0
    per_op: dict[str, int] = {}
    for node in g.node:
        ops = operands(node)
        if not ops:
            continue
        first, out = shapes[ops[0]], shapes[ops[1]]
        if node.op_type == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            macs = int(np.prod(out)) * (first[0] if trans_a else first[1])
        elif "Conv" in node.op_type:
            macs = int(np.prod(out)) * int(np.prod(first[1:]))
        else:
            macs = int(np.prod(out)) * first[-1]
        total += macs
        per_op[node.op_type] = per_op.get(node.op_type, 0) + macs
    return {"total": total, "per_op": per_op}


def count_onnx_params(model) -> int:
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))


# Ops through which tract 0.23.9's DequantizeLinearF32::declutter walks when it looks for a
# DQ -> (element-wise-looking chain) -> Q pattern to turn into a lookup table: single-data-input ops whose
# axis mapping is the identity. Softmax and LayerNormalization qualify although they are not element-wise
# (a tract bug: the lookup table it builds for such a chain gives wrong results).
_UNARY_LIKE = {
    "Softmax", "LogSoftmax", "LayerNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Erf",
    "Identity", "Cast", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "HardSigmoid", "HardSwish",
    "Softplus", "Elu", "Selu", "Clip", "Dropout", "Round", "Floor", "Ceil",
}
_DANGEROUS = {"Softmax", "LogSoftmax", "LayerNormalization"}


def find_dq_softmax_q(model) -> list[list[str]]:
    """Chains DequantizeLinear -> (unary-like ops, at least one Softmax/LayerNormalization) -> QuantizeLinear.

    Returns a list of offending chains (node names). Empty list = safe for tract's DQ/Q lookup-table fold.
    """
    g = model.graph
    consumers: dict[str, list] = {}
    for node in g.node:
        for i in node.input:
            if i:
                consumers.setdefault(i, []).append(node)
    graph_outputs = {o.name for o in g.output}
    bad = []
    for node in g.node:
        if node.op_type != "DequantizeLinear":
            continue
        chain = [node]
        cur = node
        while True:
            out = cur.output[0]
            cons = consumers.get(out, [])
            if len(cons) != 1 or out in graph_outputs:
                break
            nxt = cons[0]
            if nxt.op_type == "QuantizeLinear":
                if any(n.op_type in _DANGEROUS for n in chain):
                    bad.append([n.name or n.op_type for n in chain + [nxt]])
                break
            if nxt.op_type not in _UNARY_LIKE or nxt.input[0] != out:
                break
            chain.append(nxt)
            cur = nxt
    return bad


def fold_initializer_identities(model) -> int:
    """Replace each Identity node that only forwards an initializer by its own copy of that initializer.

    The legacy exporter de-duplicates parameters with equal values (zero biases, unit LayerNorm gains,
    untrained copies) into one initializer read through Identity nodes. onnxruntime's quantiser needs
    Conv/MatMul weights and biases to be initializers, and must not share a Conv bias with a LayerNorm
    (it would quantise it to int32 and dequantise it again for the LayerNorm), so every use gets its own
    tensor, named after the Identity's output."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    outputs = {o.name for o in g.output}
    keep, added = [], 0
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            arr = numpy_helper.to_array(inits[n.input[0]])
            g.initializer.append(numpy_helper.from_array(arr, n.output[0]))
            added += 1
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | outputs
    still = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(still)
    return added


def op_histogram(model) -> dict:
    hist: dict[str, int] = {}
    for n in model.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        hist[key] = hist.get(key, 0) + 1
    return dict(sorted(hist.items()))


def non_standard_ops(model) -> list[str]:
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})


# ---------------------------------------------------------------- runtimes
def ort_session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(sess, inputs: dict) -> np.ndarray:
    return sess.run([OUTPUT_NAME], {k: inputs[k] for k in INPUT_NAMES})[0]


def tract_available() -> bool:
    try:
        import tract  # noqa: F401
        return True
    except Exception:
        return False


def tract_load(path):
    """Load an ONNX file with tract's Python bindings (same tract version as the runtime, 0.23.9)."""
    import tract

    # into_runnable() prepares the model for tract's default CPU runtime (declutter + optimise).
    return tract.onnx().load(str(path)).into_model().into_runnable()


def tract_run(runnable, inputs: dict) -> np.ndarray:
    outs = runnable.run([inputs[k] for k in INPUT_NAMES])
    return outs[0].to_numpy()


def write_json(path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")
