"""Export GRITv2-S to ONNX (fixed shapes, opset 17, legacy TorchScript exporter) and write the reference
fixture used by the Rust tests.

    python export.py                      # seeded untrained-demo weights -> models/gritv2-s.fp32.onnx
    python export.py --checkpoint ck.pt --weights "pisc-fine trained 2026-..." --out my.onnx
"""
from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_utils as U  # noqa: E402
from model import CONFIGS, GRITv2, build_model, count_params, load_checkpoint  # noqa: E402

OPSET = 17


class _Export(torch.nn.Module):
    def __init__(self, m: GRITv2):
        super().__init__()
        self.m = m

    def forward(self, image, boxes, mask):
        return self.m(image, boxes, mask)


def export_onnx(model: GRITv2, out_path, weights: str = "untrained-demo", atol: float = 1e-4,
                check_ort: bool = True, verbose: bool = True) -> dict:
    """Export `model` to `out_path`; returns a report (max diff torch vs onnxruntime, params, MACs)."""
    import onnx

    torch.backends.mha.set_fastpath_enabled(False)
    model = model.eval()
    n, s = model.cfg.num_persons, model.cfg.img_size
    ref = U.reference_inputs() if (n == U.NUM_PERSONS and s == U.IMG_SIZE) else None
    example = (torch.zeros(1, 3, s, s), torch.zeros(1, n, 4), torch.zeros(1, n))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Export(model).eval(), example, buf,
            input_names=U.INPUT_NAMES, output_names=[U.OUTPUT_NAME],
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
        )
    # the exporter restores the wrapper's training flag recursively: make sure we stay in eval mode
    model.eval()
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = ""
    U.fold_initializer_identities(proto)
    proto.producer_name = "kith tools/python/gritv2 (torch %s)" % torch.__version__.split("+")[0]
    U.set_metadata(proto, U.metadata("fp32", weights=weights, num_classes=model.cfg.num_classes))
    onnx.checker.check_model(proto, full_check=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out_path))

    report = {
        "path": str(out_path),
        "bytes": out_path.stat().st_size,
        "sha256": U.sha256(out_path),
        "params_torch": count_params(model),
        "params_onnx": U.count_onnx_params(proto),
        "macs": U.count_macs(proto)["total"],
        "ops": U.op_histogram(proto),
    }
    if check_ort:
        sess = U.ort_session(out_path)
        diffs = []
        cases = ([ref] if ref is not None else []) + [
            U.synthetic_inputs(1000 + k, persons=min(p, n), size=s, num_persons=n) for k, p in enumerate((2, 5, 8))
        ]
        for inp in cases:
            with torch.no_grad():
                t = model(*(torch.from_numpy(inp[k]) for k in U.INPUT_NAMES)).numpy()
            o = U.ort_run(sess, inp)
            diffs.append(float(np.abs(t - o).max()))
        report["max_abs_diff_torch_vs_ort"] = max(diffs) if diffs else None
        if diffs and max(diffs) > atol:
            raise RuntimeError(f"onnxruntime output differs from torch by {max(diffs):.3g} > {atol}")
    if verbose:
        for k, v in report.items():
            if k != "ops":
                print(f"{k}: {v}")
    return report


def write_reference_fp32(model: GRITv2, onnx_path, ref_path) -> dict:
    """models/gritv2-s.reference.json: the fixed input (image by formula) and torch's FP32 output."""
    inp = U.reference_inputs()
    with torch.no_grad():
        logits = model.eval()(*(torch.from_numpy(inp[k]) for k in U.INPUT_NAMES)).numpy()
    obj = {
        "model": "gritv2-s",
        "version": U.VERSION,
        "about": "Fixed test input for gritv2-s and the expected logits, so the Rust side can check tract "
                 "against PyTorch without Python. The image is not stored: build it from image_formula "
                 "(float32 arithmetic, NCHW, RGB). Regenerate with tools/python/gritv2/regenerate.sh.",
        "image_shape": [1, 3, U.IMG_SIZE, U.IMG_SIZE],
        "image_formula": U.IMAGE_FORMULA,
        "boxes": inp["boxes"].tolist(),
        "mask": inp["mask"].tolist(),
        "labels": U.metadata("fp32")["kith.labels"].split(","),
        "fp32": {
            "file": Path(onnx_path).name,
            "sha256": U.sha256(onnx_path),
            "source": "torch %s (eval mode)" % torch.__version__.split("+")[0],
            "logits": logits.tolist(),
        },
    }
    U.write_json(ref_path, obj)
    return obj


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="gritv2-s", choices=sorted(CONFIGS),
                    help="model configuration when no --checkpoint is given (default: gritv2-s)")
    ap.add_argument("--checkpoint", help="trained checkpoint from train.py (default: seeded init)")
    ap.add_argument("--weights", default=None,
                    help='kith.weights metadata string (default: "untrained-demo" without a checkpoint, '
                         '"checkpoint:<file name>" with one)')
    ap.add_argument("--out", default=str(U.FP32_PATH), help="output ONNX path (default: %(default)s)")
    ap.add_argument("--reference", default=None,
                    help="write the reference fixture JSON here (default: models/gritv2-s.reference.json "
                         "when --out is the shipped path, else none)")
    ap.add_argument("--no-reference", action="store_true", help="do not write the reference fixture")
    args = ap.parse_args(argv)

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        weights = args.weights or f"checkpoint:{Path(args.checkpoint).name}"
    else:
        model = build_model(args.config)
        weights = args.weights or "untrained-demo"
    rep = export_onnx(model, args.out, weights=weights)
    ref = args.reference
    if ref is None and Path(args.out).resolve() == U.FP32_PATH.resolve():
        ref = str(U.REFERENCE_PATH)
    if ref and not args.no_reference:
        write_reference_fp32(model, args.out, ref)
        print(f"reference: {ref}")
    return rep


if __name__ == "__main__":
    main()
