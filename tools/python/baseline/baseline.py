#!/usr/bin/env python3
"""kith's job written the way a typical user would write it in Python: ONNX Runtime, numpy, Pillow.

A baseline for kith's Rust benchmarks, never needed at kith run time. Per frame:

  decode      read the JPEG and decode it to RGB (Pillow)
  preprocess  detector letterbox to 416x416 (Pillow bilinear resize, grey 114 padding) and the
              GRITv2-S stretch to 224x224 (Pillow bilinear), both to float32 CHW 0..1
  detect      person detector in ONNX Runtime, score >= 0.35, sort, greedy NMS at IoU 0.45,
              at most 8 persons, boxes back to source pixels (numpy)
  relate      GRITv2-S in ONNX Runtime (only when >= 2 persons), pair logits averaged, softmax
  render      copy the frame and draw boxes, pair lines and "label score" text (Pillow ImageDraw)
  total       sum of the above

Prints mean / p50 / p90 / p99 / max per stage in ms and frames/s (= 1 / mean total); --json prints
the same as JSON; --out DIR writes results.jsonl (kith's JSON lines schema) and one PNG per frame
(writing them is not timed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[3]
DEFAULT_FRAMES = REPO / "board-configs" / "demo" / "frames"
DEFAULT_DETECTOR = REPO / "models" / "person-detector.onnx"
DEFAULT_RELATION = REPO / "models" / "gritv2-s.fp32.onnx"

DET_SIZE = 416
REL_SIZE = 224
PAD = 114
SCORE_THRESHOLD = 0.35
NMS_IOU = 0.45
MAX_PERSONS = 8
LABELS = ["friends", "family", "couple", "professional", "commercial", "no relation"]
COARSE = {
    "friends": "intimate",
    "family": "intimate",
    "couple": "intimate",
    "professional": "non-intimate",
    "commercial": "non-intimate",
    "no relation": "no relation",
}
STAGES = ["decode", "preprocess", "detect", "relate", "render", "total"]

PERSON_COLOURS = [
    (0, 200, 255), (255, 170, 0), (120, 230, 60), (255, 80, 160),
    (170, 120, 255), (255, 240, 60), (0, 230, 170), (255, 110, 80),
]
LINE_COLOURS = {"intimate": (255, 90, 170), "non-intimate": (60, 200, 255), "no relation": (190, 190, 190)}


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def to_chw(img: Image.Image) -> np.ndarray:
    """RGB Pillow image -> float32 [1, 3, H, W] in 0..1."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a.transpose(2, 0, 1)[np.newaxis].copy()


def letterbox(img: Image.Image, size: int = DET_SIZE):
    """Fits the image into size x size keeping its aspect ratio; returns the tensor, scale, offsets."""
    w, h = img.size
    scale = min(size / w, size / h)
    nw, nh = round(w * scale), round(h * scale)
    resized = img.resize((nw, nh), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (PAD, PAD, PAD))
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas.paste(resized, (ox, oy))
    return to_chw(canvas), nw / w, nh / h, ox, oy


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> list[int]:
    """Greedy NMS over boxes already sorted by score (best first)."""
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    order = np.arange(len(boxes))
    keep: list[int] = []
    while order.size > 0 and len(keep) < max_keep:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = (np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])).clip(0)
        ih = (np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])).clip(0)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return keep


def detect(session: ort.InferenceSession, tensor: np.ndarray, sx: float, sy: float, ox: int, oy: int,
           width: int, height: int):
    boxes, scores = session.run(["boxes", "scores"], {"image": tensor})
    boxes, scores = boxes[0], scores[0]
    sel = scores >= SCORE_THRESHOLD
    boxes, scores = boxes[sel], scores[sel]
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    # Back to source pixels, clipped to the frame (as kith does before its NMS).
    boxes = (boxes - np.array([ox, oy, ox, oy], dtype=np.float32)) / np.array([sx, sy, sx, sy], dtype=np.float32)
    boxes = boxes.clip(0, np.array([width, height, width, height], dtype=np.float32))
    ok = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    boxes, scores = boxes[ok], scores[ok]
    keep = nms(boxes, scores, NMS_IOU, MAX_PERSONS)
    return boxes[keep], scores[keep]


def relate(session: ort.InferenceSession, tensor: np.ndarray, boxes: np.ndarray, width: int, height: int):
    """Returns [(a, b, probs[6])] for every pair a < b."""
    n = len(boxes)
    if n < 2:
        return []
    b = np.zeros((1, MAX_PERSONS, 4), dtype=np.float32)
    b[0, :n] = boxes / np.array([width, height, width, height], dtype=np.float32)
    mask = np.zeros((1, MAX_PERSONS), dtype=np.float32)
    mask[0, :n] = 1.0
    (logits,) = session.run(["logits"], {"image": tensor, "boxes": b, "mask": mask})
    logits = logits[0]
    a_idx, b_idx = np.triu_indices(n, k=1)
    pair = (logits[a_idx, b_idx] + logits[b_idx, a_idx]) / 2.0
    pair = pair - pair.max(axis=1, keepdims=True)
    e = np.exp(pair)
    probs = e / e.sum(axis=1, keepdims=True)
    return [(int(i), int(j), p) for i, j, p in zip(a_idx, b_idx, probs)]


def render(img: Image.Image, boxes: np.ndarray, relations, font) -> Image.Image:
    canvas = img.copy()
    draw = ImageDraw.Draw(canvas)
    stroke = max(canvas.width // 320, 2)

    def anchor(i):
        x1, y1, x2, y2 = boxes[i]
        return (float(x1 + x2) / 2, float(y1 + (y2 - y1) / 3))

    for a, b, p in relations:
        draw.line([anchor(a), anchor(b)], fill=LINE_COLOURS[COARSE[LABELS[int(p.argmax())]]], width=stroke)
    for i, box in enumerate(boxes):
        draw.rectangle([float(v) for v in box], outline=PERSON_COLOURS[i % len(PERSON_COLOURS)], width=stroke)
    for a, b, p in relations:
        (xa, ya), (xb, yb) = anchor(a), anchor(b)
        top = int(p.argmax())
        text = f"{LABELS[top]} {p[top]:.2f}"
        mid = ((xa + xb) / 2, (ya + yb) / 2)
        l, t, r, bt = draw.textbbox(mid, text, font=font, anchor="mm")
        draw.rectangle([l - 2, t - 2, r + 2, bt + 2], fill=(0, 0, 0))
        draw.text(mid, text, fill=(255, 255, 255), font=font, anchor="mm")
    return canvas


def list_frames(frames_dir: Path) -> list[Path]:
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"baseline.py: no .jpg/.jpeg/.png frames in {frames_dir}")
    return files


def percentile_summary(values_us: list[int]) -> dict:
    ms = np.asarray(values_us, dtype=np.float64) / 1000.0
    return {
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def json_line(index: int, source: str, width: int, height: int, boxes, scores, relations, weights, timings) -> dict:
    persons = [
        {"id": i, "box": [round(float(v), 1) for v in box], "score": round(float(s), 4)}
        for i, (box, s) in enumerate(zip(boxes, scores))
    ]
    rels = []
    for a, b, p in relations:
        top = int(p.argmax())
        rels.append({
            "a": a,
            "b": b,
            "label": LABELS[top],
            "coarse": COARSE[LABELS[top]],
            "score": round(float(p[top]), 4),
            "scores": {label: round(float(v), 4) for label, v in zip(LABELS, p)},
        })
    return {
        "frame": index,
        "source": source,
        "width": width,
        "height": height,
        "persons": persons,
        "relations": rels,
        "weights": weights,
        "timings_us": timings,
    }


def us(t0: float, t1: float) -> int:
    return int(round((t1 - t0) * 1e6))


def run(args) -> dict:
    frames = list_frames(Path(args.frames_dir))
    n_frames = args.frames if args.frames is not None else len(frames)
    detector = make_session(Path(args.detector_model), args.threads)
    relation = make_session(Path(args.relation_model), args.threads)
    weights = relation.get_modelmeta().custom_metadata_map.get("kith.weights", "unknown")
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType support for the default font
        font = ImageFont.load_default()

    out_dir = Path(args.out) if args.out else None
    jsonl = None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        jsonl = open(out_dir / "results.jsonl", "w", encoding="utf-8")

    times = {s: [] for s in STAGES}
    # Warm-up frames first (not counted), then the timed frames from the folder's first frame.
    for k in range(args.warmup + n_frames):
        index = k - args.warmup
        path = frames[(k if index < 0 else index) % len(frames)]
        t0 = time.perf_counter()
        img = Image.open(path).convert("RGB")
        t1 = time.perf_counter()
        w, h = img.size
        det_in, sx, sy, ox, oy = letterbox(img)
        rel_in = to_chw(img.resize((REL_SIZE, REL_SIZE), Image.BILINEAR))
        t2 = time.perf_counter()
        boxes, scores = detect(detector, det_in, sx, sy, ox, oy, w, h)
        t3 = time.perf_counter()
        relations = relate(relation, rel_in, boxes, w, h)
        t4 = time.perf_counter()
        canvas = render(img, boxes, relations, font)
        t5 = time.perf_counter()
        timings = {
            "decode": us(t0, t1), "preprocess": us(t1, t2), "detect": us(t2, t3),
            "relate": us(t3, t4), "render": us(t4, t5),
        }
        timings["total"] = sum(timings.values())
        if index < 0:
            continue
        for s in STAGES:
            times[s].append(timings[s])
        if out_dir:
            line = json_line(index, path.name, w, h, boxes, scores, relations, weights, timings)
            jsonl.write(json.dumps(line) + "\n")
            canvas.save(out_dir / f"{index:05d}_{path.stem}.png")
    if jsonl:
        jsonl.close()

    stages = {s: percentile_summary(times[s]) for s in STAGES}
    mean_total_s = stages["total"]["mean_ms"] / 1000.0
    return {
        "frames": n_frames,
        "threads": args.threads,
        "fps": round(1.0 / mean_total_s, 3) if mean_total_s > 0 else 0.0,
        "stages": stages,
        "models": {"detector": Path(args.detector_model).name, "relation": Path(args.relation_model).name},
        "onnxruntime": ort.__version__,
    }


def print_table(summary: dict) -> None:
    print(f"frames {summary['frames']}  threads {summary['threads']}  onnxruntime {summary['onnxruntime']}  "
          f"models {summary['models']['detector']} + {summary['models']['relation']}")
    print(f"{'stage':<12}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}   (ms)")
    for s in STAGES:
        v = summary["stages"][s]
        print(f"{s:<12}{v['mean_ms']:>10.2f}{v['p50_ms']:>10.2f}{v['p90_ms']:>10.2f}{v['p99_ms']:>10.2f}{v['max_ms']:>10.2f}")
    print(f"frames/s {summary['fps']:.2f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames-dir", default=str(DEFAULT_FRAMES), help="folder of .jpg/.png frames (default: the demo frames)")
    p.add_argument("--frames", type=int, default=None, help="frames to time, cycling through the folder (default: one pass)")
    p.add_argument("--warmup", type=int, default=2, help="frames run first and not counted (default 2)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--detector-model", default=str(DEFAULT_DETECTOR))
    p.add_argument("--relation-model", default=str(DEFAULT_RELATION), help="gritv2-s.fp32.onnx (default) or gritv2-s.int8.onnx")
    p.add_argument("--out", default=None, help="write results.jsonl and one PNG per timed frame here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if args.frames is not None and args.frames < 1:
        p.error("--frames must be >= 1")
    if args.warmup < 0 or args.threads < 1:
        p.error("--warmup must be >= 0 and --threads >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = run(args)
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
