"""Post-training static INT8 quantisation of the GRITv2-S ONNX graph for tract.

Recipe (from the measurements of tract 0.23.9 with INT8 graphs):
  * onnxruntime.quantization.quantize_static, QuantFormat.QOperator (QLinearMatMul / QLinearConv, which tract
    lowers to its int8 matmul kernels), never QDQ;
  * signed int8 activations and weights, zero point 0 (ActivationSymmetric, WeightSymmetric), one scale per
    tensor (per_channel=False);
  * op_types_to_quantize = MatMul, Conv, Gemm only (other QLinear* ops are com.microsoft contrib ops);
  * attention QK^T is quantised (QLinearMatMul of two activations); the other activation x activation
    MatMuls (attention AV, box pooling) stay FP32, so softmax and its neighbours run in f32 and no
    DequantizeLinear -> Softmax -> QuantizeLinear chain can appear (tract 0.23.9 folds such a chain into
    a wrong lookup table). --f32-qk keeps QK^T in FP32 too;
  * depthwise convolutions (group > 1) stay FP32: tract 0.23.9 runs a grouped QLinearConv as an int8
    im2col plus one tiny matmul per group, about 7x slower than its f32 DepthWiseConv (docs/int8.md),
    for under 1 % of the MACs;
  * MinMax calibration on deterministic synthetic frames (onnx_utils.synthetic_inputs: seeded colour
    gradients, person-sized blobs, noise; 2-8 boxes) - there is no PISC data here.

    python quantize.py                                  # models/gritv2-s.fp32.onnx -> models/gritv2-s.int8.onnx
    python quantize.py --input my.fp32.onnx --out my.int8.onnx --calib-dir pisc/images --calib-split ...
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_utils as U  # noqa: E402

MIN_MB, MAX_MB = 15.0, 30.0


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _is_const(name: str, graph, prod: dict) -> bool:
    inits = {i.name for i in graph.initializer}
    seen = set()
    while True:
        if name in inits:
            return True
        n = prod.get(name)
        if n is None or name in seen:
            return False
        seen.add(name)
        if n.op_type == "Constant":
            return True
        if n.op_type in ("Identity", "Transpose", "Reshape", "Cast") and n.input:
            name = n.input[0]
            continue
        return False


def depthwise_convs(model) -> list[str]:
    """Names of the Conv nodes with more than one group (TinyViT's depthwise 3x3 convolutions)."""
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group > 1:
            out.append(n.name)
    return out


def act_x_act_matmuls(model) -> dict:
    """Names of MatMul nodes whose both operands are activations, split into QK^T-like (output reaches a
    Softmax through Mul/Add/Div) and the rest (AV, pooling)."""
    g = model.graph
    prod = _producers(g)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    qk, other = [], []
    for n in g.node:
        if n.op_type != "MatMul":
            continue
        if _is_const(n.input[0], g, prod) or _is_const(n.input[1], g, prod):
            continue
        # follow single-consumer Mul/Add/Div chain to a Softmax
        cur, is_qk = n.output[0], False
        for _ in range(4):
            cs = consumers.get(cur, [])
            if len(cs) != 1:
                break
            if cs[0].op_type == "Softmax":
                is_qk = True
                break
            if cs[0].op_type not in ("Mul", "Add", "Div"):
                break
            cur = cs[0].output[0]
        (qk if is_qk else other).append(n.name)
    return {"qk": qk, "other": other}


class SyntheticReader:
    """CalibrationDataReader over deterministic synthetic inputs."""

    def __init__(self, n: int, seed: int = 0, size: int = U.IMG_SIZE, num_persons: int = U.NUM_PERSONS):
        self.items = [U.synthetic_inputs(seed + k, persons=min(2 + (k % 7), num_persons), size=size,
                                         num_persons=num_persons) for k in range(n)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]

    def rewind(self):
        self.i = 0


class ListReader(SyntheticReader):
    def __init__(self, items):
        self.items = list(items)
        self.i = 0


def pisc_calibration_items(root: str, split_prefix: str, n: int) -> list[dict]:
    """Calibration inputs from real PISC images (same preprocessing as the runtime)."""
    from data import PiscDataset

    ds = PiscDataset(root, split_prefix, img_size=U.IMG_SIZE, train=False)
    items = []
    for k in range(min(n, len(ds))):
        s = ds[k]
        items.append({"image": s["image"][None].numpy(), "boxes": s["boxes"][None].numpy(),
                      "mask": s["mask"][None].numpy()})
    return items


def quantize(fp32_path, out_path, reader, quantize_qk: bool = True, weights: str | None = None,
             narrow_weights: bool = False) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32_path))
    mm = act_x_act_matmuls(model)
    depthwise = depthwise_convs(model)
    exclude = mm["other"] + ([] if quantize_qk else mm["qk"]) + depthwise
    with tempfile.TemporaryDirectory() as td:
        tmp_out = Path(td) / "q.onnx"
        quantize_static(
            str(fp32_path), str(tmp_out), reader,
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["MatMul", "Conv", "Gemm"],
            per_channel=False,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           "MatMulConstBOnly": not quantize_qk},
        )
        q = onnx.load(str(tmp_out))
    meta = U.get_metadata(model)
    if not meta:
        meta = U.metadata("int8")
    meta["kith.precision"] = "int8"
    if weights:
        meta["kith.weights"] = weights
    if narrow_weights:
        # kith may halve these weights to [-64, 64] where its AVX2 int8 kernel gains from it
        # (docs/int8.md, "Weights narrowed to 7 bits"); its tests/int8.rs bounds what that costs.
        meta["kith.int8_narrow_weights"] = "allowed"
    U.set_metadata(q, meta)
    q.doc_string = ""
    problems = check_int8_graph(q)
    if problems:
        raise RuntimeError("INT8 graph is not safe for tract: " + "; ".join(problems))
    onnx.checker.check_model(q)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(q, str(out_path))
    return {"excluded_act_matmuls": len(exclude) - len(depthwise), "excluded_depthwise_convs": len(depthwise),
            "quantized_qk": quantize_qk,
            "ops": U.op_histogram(q)}


def check_int8_graph(q) -> list[str]:
    """Everything that would make the INT8 graph unloadable or wrong in tract 0.23.9."""
    from onnx import numpy_helper

    problems = []
    ns = U.non_standard_ops(q)
    if ns:
        problems.append(f"non-standard ops {ns}")
    chains = U.find_dq_softmax_q(q)
    if chains:
        problems.append(f"DequantizeLinear -> Softmax/LayerNorm -> QuantizeLinear chains: {chains[:3]}")
    inits = {i.name: i for i in q.graph.initializer}
    for n in q.graph.node:
        if n.op_type not in ("QLinearMatMul", "QLinearConv", "QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "QLinearMatMul":
            pairs = [(1, 2), (4, 5), (6, 7)]
        elif n.op_type == "QLinearConv":
            pairs = [(1, 2), (4, 5), (6, 7)]
        else:
            pairs = [(1, 2)]
        for s_i, z_i in pairs:
            if len(n.input) <= z_i or n.input[z_i] not in inits:
                continue
            z = numpy_helper.to_array(inits[n.input[z_i]])
            s = numpy_helper.to_array(inits[n.input[s_i]]) if n.input[s_i] in inits else np.zeros(1)
            if z.size != 1 or s.size != 1:
                problems.append(f"{n.name}: per-channel scale/zero point")
            elif z.dtype not in (np.int8, np.int32) or int(z.reshape(-1)[0]) != 0:
                problems.append(f"{n.name}: zero point {z.reshape(-1)[0]} of type {z.dtype}")
    return problems


def compare(fp32_path, int8_path, cases: list[dict], with_tract: bool = True) -> dict:
    """INT8 vs FP32 in onnxruntime on `cases`: max abs logit diff and top-1 agreement over valid pairs.
    Also INT8 in tract vs INT8 in onnxruntime when the tract bindings are installed."""
    s32, s8 = U.ort_session(fp32_path), U.ort_session(int8_path)
    tr = U.tract_load(int8_path) if (with_tract and U.tract_available()) else None
    max_diff, agree, total, tract_diff, tract_agree, margins = 0.0, 0, 0, 0.0, 0, []
    max_logit, tract_fp32_diff, tract_fp32_agree = 0.0, 0.0, 0
    per_case = []
    for inp in cases:
        a, b = U.ort_run(s32, inp), U.ort_run(s8, inp)
        pairs = U.valid_pairs(inp["mask"])
        d = max(float(np.abs(a[0, i, j] - b[0, i, j]).max()) for i, j in pairs)
        ag = sum(int(a[0, i, j].argmax() == b[0, i, j].argmax()) for i, j in pairs)
        for i, j in pairs:
            max_logit = max(max_logit, float(np.abs(a[0, i, j]).max()))
            srt = np.sort(a[0, i, j])
            margins.append(float(srt[-1] - srt[-2]))
        row = {"persons": int(inp["mask"].sum()), "pairs": len(pairs), "max_abs_diff": d, "top1_agree": ag}
        if tr is not None:
            t = U.tract_run(tr, inp)
            td = max(float(np.abs(t[0, i, j] - b[0, i, j]).max()) for i, j in pairs)
            ta = sum(int(t[0, i, j].argmax() == b[0, i, j].argmax()) for i, j in pairs)
            tf = max(float(np.abs(t[0, i, j] - a[0, i, j]).max()) for i, j in pairs)
            tfa = sum(int(t[0, i, j].argmax() == a[0, i, j].argmax()) for i, j in pairs)
            row.update(tract_vs_ort_int8=td, tract_top1_agree_ort_int8=ta, tract_int8_vs_fp32=tf,
                       tract_int8_top1_agree_fp32=tfa)
            tract_diff, tract_agree = max(tract_diff, td), tract_agree + ta
            tract_fp32_diff, tract_fp32_agree = max(tract_fp32_diff, tf), tract_fp32_agree + tfa
        per_case.append(row)
        max_diff, agree, total = max(max_diff, d), agree + ag, total + len(pairs)
    out = {"cases": len(cases), "pairs": total, "max_abs_diff": max_diff, "top1_agree": agree,
           "top1_agreement": agree / max(total, 1),
           "fp32_top2_margin_median": float(np.median(margins)) if margins else None,
           "fp32_max_abs_logit": max_logit, "per_case": per_case}
    if tr is not None:
        out.update(tract_vs_ort_int8_max_abs_diff=tract_diff, tract_top1_agreement=tract_agree / max(total, 1),
                   tract_int8_vs_fp32_max_abs_diff=tract_fp32_diff,
                   tract_int8_top1_agreement_fp32=tract_fp32_agree / max(total, 1))
    return out


def input_dims(path) -> tuple[int, int]:
    """(image size, N persons) of an exported graph."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    return dims["image"][2], dims["mask"][1]


def comparison_cases(n: int = 16, seed: int = 5000, size: int = U.IMG_SIZE,
                     num_persons: int = U.NUM_PERSONS) -> list[dict]:
    """Several inputs with 2-8 persons (seeds disjoint from calibration) plus the reference input."""
    cases = [U.synthetic_inputs(seed + k, persons=min(2 + (k % 7), num_persons), size=size,
                                num_persons=num_persons) for k in range(n)]
    if size == U.IMG_SIZE and num_persons == U.NUM_PERSONS:
        cases.append(U.reference_inputs())
    return cases


def update_reference_int8(int8_path, ref_path) -> None:
    ref = json.loads(Path(ref_path).read_text())
    inp = U.reference_inputs()
    logits = U.ort_run(U.ort_session(int8_path), inp)
    import onnxruntime

    ref["int8"] = {
        "file": Path(int8_path).name,
        "sha256": U.sha256(int8_path),
        "source": "onnxruntime %s (CPU)" % onnxruntime.__version__,
        "logits": logits.tolist(),
    }
    U.write_json(ref_path, ref)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(U.FP32_PATH), help="FP32 ONNX (default: %(default)s)")
    ap.add_argument("--out", default=str(U.INT8_PATH), help="INT8 ONNX (default: %(default)s)")
    ap.add_argument("--calib-samples", type=int, default=32, help="calibration inputs (default: %(default)s)")
    ap.add_argument("--calib-seed", type=int, default=0, help="first seed of the synthetic inputs")
    ap.add_argument("--calib-root", help="calibrate on PISC images instead: dataset root (see data.py)")
    ap.add_argument("--calib-split", default="PISC_fine_relation_train",
                    help="split prefix for --calib-root (default: %(default)s)")
    ap.add_argument("--f32-qk", action="store_true",
                    help="keep attention QK^T in FP32 (default: QLinearMatMul; softmax and AV stay f32)")
    ap.add_argument("--reference", default=None,
                    help="add the INT8 logits to this reference JSON (default: models/gritv2-s.reference.json "
                         "when --out is the shipped path)")
    ap.add_argument("--narrow-weights", action="store_true",
                    help="allow kith to narrow the weights to 7 bits on CPUs where that is faster "
                         "(metadata kith.int8_narrow_weights; docs/int8.md)")
    ap.add_argument("--no-compare", action="store_true", help="skip the INT8-vs-FP32 comparison")
    ap.add_argument("--allow-size", action="store_true", help="do not enforce the 15-30 MB size window")
    ap.add_argument("--report", help="write the comparison report as JSON here")
    args = ap.parse_args(argv)

    if args.calib_root:
        reader = ListReader(pisc_calibration_items(args.calib_root, args.calib_split, args.calib_samples))
    else:
        size, n = input_dims(args.input)
        reader = SyntheticReader(args.calib_samples, args.calib_seed, size=size, num_persons=n)
    info = quantize(args.input, args.out, reader, quantize_qk=not args.f32_qk,
                    narrow_weights=args.narrow_weights)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size} bytes ({size / 1e6:.1f} MB), sha256 {U.sha256(args.out)}")
    print(f"act x act MatMuls left in f32: {info['excluded_act_matmuls']}; depthwise convs left in f32: "
          f"{info['excluded_depthwise_convs']}; ops: {info['ops']}")
    if not args.allow_size and not (MIN_MB * 1e6 <= size <= MAX_MB * 1e6):
        raise SystemExit(f"INT8 file is {size / 1e6:.1f} MB, outside {MIN_MB}-{MAX_MB} MB")
    ref = args.reference
    if ref is None and Path(args.out).resolve() == U.INT8_PATH.resolve():
        ref = str(U.REFERENCE_PATH)
    if ref:
        update_reference_int8(args.out, ref)
        print(f"reference: {ref}")
    rep = None
    if not args.no_compare:
        size, n = input_dims(args.input)
        rep = compare(args.input, args.out, comparison_cases(size=size, num_persons=n))
        print(json.dumps({k: v for k, v in rep.items() if k != "per_case"}, indent=1))
        for row in rep["per_case"]:
            print(row)
        if args.report:
            U.write_json(args.report, rep)
    return info, rep


if __name__ == "__main__":
    main()
