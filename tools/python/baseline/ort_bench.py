#!/usr/bin/env python3
"""Times one ONNX file in ONNX Runtime on fixed, deterministic inputs (model run only).

The ONNX Runtime side of `kith-model bench FILE --threads N --runs N --json` (same keys median_ms,
p90_ms). A baseline for comparison, never needed at kith run time.

Inputs:
  * GRITv2-S (inputs image [1,3,224,224], boxes [1,8,4], mask [1,8]): the reference input of
    models/gritv2-s.reference.json: image[0,c,y,x] = ((c*61 + y*7 + x*13) % 256) / 255.0 (float32),
    boxes and mask as stored in the JSON.
  * any other model: every float input gets a pattern of its declared shape (dynamic dimensions
    taken as 1): for a 4-D input [N, C, H, W], x[n,c,y,x] = ((c*61 + y*7 + x*13) % 256) / 255.0
    (the same formula); for any other rank, element i of the flattened tensor = ((i*13) % 256) / 255.0.
    Integer inputs get zeros, bool inputs False.

Session: intra_op_num_threads = --threads (default 1), inter_op 1, sequential execution, all graph
optimisations (ORT_ENABLE_ALL). --warmup runs first (default 3), then --runs timed runs (default 20);
prints the median and p90 in ms per run, or with --json exactly
{"file", "threads", "runs", "median_ms", "p90_ms", "onnxruntime"}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[3]
REFERENCE_JSON = REPO / "models" / "gritv2-s.reference.json"

_NUMPY_OF_ORT = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def reference_image(shape=(1, 3, 224, 224)) -> np.ndarray:
    """image[n,c,y,x] = ((c*61 + y*7 + x*13) % 256) / 255.0, float32."""
    n, c, h, w = shape
    ci = np.arange(c).reshape(c, 1, 1)
    yi = np.arange(h).reshape(1, h, 1)
    xi = np.arange(w).reshape(1, 1, w)
    img = ((ci * 61 + yi * 7 + xi * 13) % 256).astype(np.float32) / np.float32(255.0)
    return np.broadcast_to(img, (n, c, h, w)).astype(np.float32).copy()


def is_gritv2(session: ort.InferenceSession) -> bool:
    shapes = {i.name: list(i.shape) for i in session.get_inputs()}
    return shapes == {"image": [1, 3, 224, 224], "boxes": [1, 8, 4], "mask": [1, 8]}


def gritv2_inputs(reference: Path = REFERENCE_JSON) -> dict:
    ref = json.loads(reference.read_text())
    return {
        "image": reference_image(tuple(ref["image_shape"])),
        "boxes": np.asarray(ref["boxes"], dtype=np.float32),
        "mask": np.asarray(ref["mask"], dtype=np.float32),
    }


def pattern_input(shape, dtype) -> np.ndarray:
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)
    if dtype == np.bool_:
        return np.zeros(shape, dtype=np.bool_)
    if not np.issubdtype(dtype, np.floating):
        return np.zeros(shape, dtype=dtype)
    if len(shape) == 4:
        return reference_image(shape).astype(dtype)
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((i * 13) % 256).astype(np.float32) / np.float32(255.0)).reshape(shape).astype(dtype)


def fixed_inputs(session: ort.InferenceSession) -> dict:
    if is_gritv2(session):
        return gritv2_inputs()
    feeds = {}
    for i in session.get_inputs():
        dtype = _NUMPY_OF_ORT.get(i.type)
        if dtype is None:
            raise SystemExit(f"ort_bench.py: input {i.name} has unsupported type {i.type}")
        feeds[i.name] = pattern_input(i.shape, dtype)
    return feeds


def bench(path: Path, threads: int = 1, runs: int = 20, warmup: int = 3) -> dict:
    session = make_session(path, threads)
    feeds = fixed_inputs(session)
    for _ in range(warmup):
        session.run(None, feeds)
    times_ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times_ms.append((time.perf_counter() - t0) * 1000.0)
    t = np.asarray(times_ms)
    return {
        "file": str(path),
        "threads": threads,
        "runs": runs,
        "median_ms": round(float(np.median(t)), 3),
        "p90_ms": round(float(np.percentile(t, 90)), 3),
        "onnxruntime": ort.__version__,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="ONNX file")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        p.error("--threads and --runs must be >= 1, --warmup >= 0")
    r = bench(Path(args.file), args.threads, args.runs, args.warmup)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['file']}: median {r['median_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms "
              f"({r['runs']} runs, {r['threads']} thread(s), onnxruntime {r['onnxruntime']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
