"""Compare kith person-detector candidates on composed test images with known ground truth.

    tools/python/.venv-detector/bin/python tools/python/detector/evaluate.py [--per-type N]
        [--model NAME=PATH[:resize[:pad]] ...] [--save-dir DIR] [--backend ort|tract]

Ground truth: the person extent in three public-domain photos shipped in packages (scikit-image
astronaut.png and camera.png, matplotlib's grace_hopper.jpg) was annotated once by hand (SOURCES).
Scenes of 640x480 are composed deterministically (fixed seeds) by pasting those people (crop of the
annotated box plus a small margin) onto non-person backgrounds shipped with scikit-image, as:
normal (180-400 px tall), small (40-80 px tall), edge (20-50 % of the box outside the frame),
occluded (25-45 % of the box covered by another pasted picture), and small+edge / small+occluded.
The ground-truth box is the visible part (clipped to the frame / minus the covered band).

Detections are post-processed exactly as kith does (runtime/src/detect.rs, image.rs): kith's
bilinear letterbox/stretch into the model input, score >= threshold, sort by score, map back to
source pixels (clipped), drop boxes < 1 px, greedy NMS at IoU 0.45, at most 8 persons.
A detection matches an unmatched ground-truth box at IoU >= 0.5 (greedy by score); others are
false positives. The models run in onnxruntime, or with --backend tract in tract 0.23.9's Python
binding (the tract-onnx version kith runs; use it for INT8 files, whose requantisation rounding
differs between the two). Latency: that backend, 1 thread, sequential, median of N runs after
warm-up, model only (no pre/post-processing). After the table, the found/total counts per category.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCENE_W, SCENE_H = 640, 480
SCORE_THRESHOLD = 0.35   # kith's default DetectorSettings::score_threshold
NMS_IOU = 0.45           # kith's default DetectorSettings::nms_iou
MAX_PERSONS = 8          # runtime/src/limits.rs
MATCH_IOU = 0.5


def _skimage(name):
    import skimage.data
    return os.path.join(os.path.dirname(skimage.data.__file__), name)


def _mpl(name):
    import matplotlib
    return os.path.join(matplotlib.get_data_path(), "sample_data", name)


# Hand-annotated person extent (x1, y1, x2, y2) in each source photo's pixels: the visible body
# (hair/cap top to the photo's bottom edge, outermost shoulder/arm/glove left and right).
SOURCES = {
    "astronaut": (lambda: _skimage("astronaut.png"), (18, 14, 370, 512)),
    "camera": (lambda: _skimage("camera.png"), (0, 64, 330, 512)),
    "grace_hopper": (lambda: _mpl("grace_hopper.jpg"), (12, 22, 512, 600)),
}
BACKGROUNDS = ["rocket.jpg", "coffee.png", "motorcycle_left.png", "grass.png", "gravel.png",
               "brick.png", "chelsea.png", "hubble_deep_field.jpg", "moon.png", "coins.png"]
OCCLUDERS = ["coffee.png", "chelsea.png", "brick.png", "color.png", "rocket.jpg", "coins.png"]
SCENE_TYPES = ["normal", "small", "edge", "occluded", "small_edge", "small_occluded"]


def load_rgb(path) -> Image.Image:
    return Image.open(path).convert("RGB")


class Composer:
    def __init__(self):
        self.people = {k: (load_rgb(f()), box) for k, (f, box) in SOURCES.items()}
        self.bgs = [load_rgb(_skimage(n)).resize((SCENE_W, SCENE_H), Image.BILINEAR) for n in BACKGROUNDS]
        self.occ = [load_rgb(_skimage(n)) for n in OCCLUDERS]

    def paste_person(self, canvas, name, h, x, y):
        """Paste person `name` so that its annotated box is h px tall with top-left at (x, y).
        Returns the full (unclipped) box."""
        img, (bx1, by1, bx2, by2) = self.people[name]
        bw, bh = bx2 - bx1, by2 - by1
        m = 0.06
        cx1, cy1 = max(0, int(bx1 - m * bw)), max(0, int(by1 - m * bh))
        cx2, cy2 = min(img.width, int(bx2 + m * bw)), min(img.height, int(by2 + m * bh))
        s = h / bh
        crop = img.crop((cx1, cy1, cx2, cy2))
        crop = crop.resize((max(1, round((cx2 - cx1) * s)), max(1, round((cy2 - cy1) * s))), Image.BILINEAR)
        canvas.paste(crop, (round(x - (bx1 - cx1) * s), round(y - (by1 - cy1) * s)))
        return [x, y, x + bw * s, y + h]

    def aspect(self, name):
        _, (x1, y1, x2, y2) = self.people[name]
        return (x2 - x1) / (y2 - y1)

    def scene(self, kind: str, seed: int):
        rng = np.random.default_rng([SCENE_TYPES.index(kind), seed])
        canvas = self.bgs[int(rng.integers(len(self.bgs)))].copy()
        small = kind.startswith("small")
        n = int(rng.integers(3, 6)) if kind == "small" else int(rng.integers(2, 4)) if small else int(rng.integers(1, 3))
        gts, placed, occluders = [], [], []
        for _ in range(n):
            name = list(self.people)[int(rng.integers(len(self.people)))]
            lo, hi = (40, 80) if small else (180, 400) if kind == "normal" else (120, 320)
            for _try in range(200):
                h = float(rng.uniform(lo, hi))
                w = h * self.aspect(name)
                tags = {"small"} if small else set()
                if kind.endswith("edge"):
                    side = ["left", "right", "bottom", "top"][int(rng.integers(4))]
                    cut = float(rng.uniform(0.2, 0.5))
                    if side == "left":
                        x, y = -cut * w, rng.uniform(0, SCENE_H - h)
                    elif side == "right":
                        x, y = SCENE_W - (1 - cut) * w, rng.uniform(0, SCENE_H - h)
                    elif side == "bottom":
                        x, y = rng.uniform(0, SCENE_W - w), SCENE_H - (1 - cut) * h
                    else:
                        x, y = rng.uniform(0, SCENE_W - w), -cut * h
                    tags |= {"edge", "partial"}
                else:
                    if w >= SCENE_W or h >= SCENE_H:
                        continue
                    x, y = rng.uniform(0, SCENE_W - w), rng.uniform(0, SCENE_H - h)
                box = [float(x), float(y), float(x + w), float(y + h)]
                pad = 0.08 * h
                if all(box[2] + pad < p[0] or p[2] + pad < box[0] or box[3] + pad < p[1] or p[3] + pad < box[1]
                       for p in placed):
                    break
            else:
                continue
            full = self.paste_person(canvas, name, h, box[0], box[1])
            placed.append(full)
            vis = [max(0.0, full[0]), max(0.0, full[1]), min(SCENE_W, full[2]), min(SCENE_H, full[3])]
            if kind.endswith("occluded"):
                frac = float(rng.uniform(0.25, 0.45))
                side = ["left", "right", "bottom"][int(rng.integers(3))]
                bw, bh = vis[2] - vis[0], vis[3] - vis[1]
                ext = 0.1 * bh
                if side == "left":
                    r = [vis[0] - ext, vis[1] - ext, vis[0] + frac * bw, vis[3] + ext]
                    vis[0] = r[2]
                elif side == "right":
                    r = [vis[2] - frac * bw, vis[1] - ext, vis[2] + ext, vis[3] + ext]
                    vis[2] = r[0]
                else:
                    r = [vis[0] - ext, vis[3] - frac * bh, vis[2] + ext, vis[3] + ext]
                    vis[3] = r[1]
                occluders.append(r)
                tags |= {"occluded", "partial"}
            gts.append((vis, tags))
        for r in occluders:
            o = self.occ[int(rng.integers(len(self.occ)))]
            x1, y1 = round(r[0]), round(r[1])
            w, h = max(1, round(r[2]) - x1), max(1, round(r[3]) - y1)
            canvas.paste(o.resize((w, h), Image.BILINEAR), (x1, y1))
        return np.asarray(canvas, np.uint8), gts


# ------------------------------------------------------------------ kith's preprocessing, in numpy

def kith_resize(src: np.ndarray, dst_w: int, dst_h: int, mode: str, pad: float):
    """Exactly runtime/src/image.rs resize_into_chw: returns (chw float32, placement)."""
    sh_i, sw_i = src.shape[:2]
    sw, sh = np.float32(sw_i), np.float32(sh_i)
    dst = np.empty((3, dst_h, dst_w), np.float32)
    if mode == "stretch":
        iw, ih, ox, oy = dst_w, dst_h, 0, 0
        place = (np.float32(dst_w) / sw, np.float32(dst_h) / sh, 0.0, 0.0)
    elif mode == "letterbox":
        scale = min(np.float32(dst_w) / sw, np.float32(dst_h) / sh)
        iw = int(min(max(np.floor(sw * scale + np.float32(0.5)), 1), dst_w))
        ih = int(min(max(np.floor(sh * scale + np.float32(0.5)), 1), dst_h))
        ox, oy = (dst_w - iw) // 2, (dst_h - ih) // 2
        dst.fill(np.float32(pad))
        place = (np.float32(iw) / sw, np.float32(ih) / sh, float(ox), float(oy))
    else:
        raise ValueError(mode)
    inv_x, inv_y = sw / np.float32(iw), sh / np.float32(ih)
    fy = np.clip((np.arange(ih, dtype=np.float32) + np.float32(0.5)) * inv_y - np.float32(0.5), 0, sh - 1)
    fx = np.clip((np.arange(iw, dtype=np.float32) + np.float32(0.5)) * inv_x - np.float32(0.5), 0, sw - 1)
    y0 = fy.astype(np.int64)
    x0 = fx.astype(np.int64)
    y1 = np.minimum(y0 + 1, sh_i - 1)
    x1 = np.minimum(x0 + 1, sw_i - 1)
    wy = (fy - y0).astype(np.float32)[:, None, None]
    wx = (fx - x0).astype(np.float32)[None, :, None]
    s = src.astype(np.float32)
    a, b = s[y0][:, x0], s[y0][:, x1]
    d, e = s[y1][:, x0], s[y1][:, x1]
    top = a + (b - a) * wx
    bottom = d + (e - d) * wx
    out = (top + (bottom - top) * wy) * np.float32(1.0 / 255.0)
    dst[:, oy:oy + ih, ox:ox + iw] = out.transpose(2, 0, 1)
    return dst, place


def iou(a, b) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - inter
    return inter / union if union > 0 else 0.0


def kith_postprocess(boxes, scores, place, frame_w, frame_h, threshold=SCORE_THRESHOLD):
    """runtime/src/detect.rs Detector::detect for the boxes-scores decoder."""
    sx, sy, ox, oy = place
    idx = np.nonzero((scores >= threshold) & np.isfinite(scores))[0]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    persons = []
    for a in idx:
        if len(persons) >= MAX_PERSONS:
            break
        b = boxes[a]
        bb = [float(np.clip((b[0] - ox) / sx, 0, frame_w)), float(np.clip((b[1] - oy) / sy, 0, frame_h)),
              float(np.clip((b[2] - ox) / sx, 0, frame_w)), float(np.clip((b[3] - oy) / sy, 0, frame_h))]
        if bb[2] - bb[0] < 1.0 or bb[3] - bb[1] < 1.0:
            continue
        if any(iou(p[0], bb) > NMS_IOU for p in persons):
            continue
        persons.append((bb, float(scores[a])))
    return persons


class OnnxDetector:
    def __init__(self, path, resize=None, pad=None, threads=1, backend="ort"):
        import onnx
        import onnxruntime as ort
        meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        self.resize = resize or meta.get("kith.resize", "letterbox")
        self.pad = float(pad if pad is not None else meta.get("kith.pad_value", 114 / 255))
        self.backend = backend
        if backend == "tract":   # tract 0.23.9's Python binding: the tract-onnx version kith runs
            import tract
            self.tract = tract.onnx().load(path).into_model().into_runnable()
        elif backend != "ort":
            raise ValueError(backend)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        shp = self.sess.get_inputs()[0].shape
        self.h, self.w = int(shp[2]), int(shp[3])

    def __call__(self, rgb: np.ndarray):
        x, place = kith_resize(rgb, self.w, self.h, self.resize, self.pad)
        boxes, scores = self.run(x[None])
        return kith_postprocess(boxes[0], scores[0], place, rgb.shape[1], rgb.shape[0])

    def run(self, x):
        """Raw outputs (boxes [1,A,4], scores [1,A]) for the model input x [1,3,H,W]."""
        if self.backend == "tract":
            boxes, scores = [o.to_numpy() for o in self.tract.run([x])]
            return boxes, scores
        return self.sess.run(["boxes", "scores"], {"image": x})

    def latency_ms(self, runs=30, warmup=5):
        x = np.random.default_rng(0).random((1, 3, self.h, self.w), dtype=np.float32)
        for _ in range(warmup):
            self.run(x)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(x)
            t.append((time.perf_counter() - t0) * 1000)
        return statistics.median(t)


CATEGORIES = ["all", "small", "partial", "edge", "occluded", "normal"]


def evaluate(det: OnnxDetector, scenes) -> dict:
    hit = {c: 0 for c in CATEGORIES}
    tot = {c: 0 for c in CATEGORIES}
    fps = 0
    for img, gts in scenes:
        dets = det(img)
        matched = [False] * len(gts)
        for bb, _ in dets:
            best, bi = 0.0, -1
            for k, (g, _) in enumerate(gts):
                if not matched[k]:
                    v = iou(bb, g)
                    if v > best:
                        best, bi = v, k
            if best >= MATCH_IOU:
                matched[bi] = True
            else:
                fps += 1
        for (g, tags), m in zip(gts, matched):
            cats = {"all"} | set(tags) | ({"normal"} if not tags else set())
            for c in cats:
                tot[c] += 1
                hit[c] += int(m)
    res = {c: (hit[c] / tot[c] if tot[c] else float("nan"), hit[c], tot[c]) for c in CATEGORIES}
    res["fp_per_image"] = fps / max(1, len(scenes))
    return res


def build_scenes(per_type: int):
    comp = Composer()
    return [comp.scene(kind, s) for kind in SCENE_TYPES for s in range(per_type)]


def default_models():
    out = os.path.join(common.CACHE, "out")
    return [
        ("ssdlite/stretch", os.path.join(out, "ssdlite-person.onnx"), "stretch", 0.5),
        ("ssdlite/letterbox", os.path.join(out, "ssdlite-person.onnx"), "letterbox", 0.5),
        ("nanodet-g/letterbox", os.path.join(common.MODELS, "person-detector.onnx"), "letterbox", 114 / 255),
        ("nanodet-g/stretch", os.path.join(common.MODELS, "person-detector.onnx"), "stretch", 114 / 255),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-type", type=int, default=16, help="scenes per scene type")
    ap.add_argument("--model", action="append", default=[],
                    help="LABEL=PATH[:resize[:pad]] (default: models/person-detector.onnx and .cache/out/ssdlite-person.onnx, both resizes)")
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--save-dir", help="write the scenes with ground truth (green) as PNG here")
    ap.add_argument("--backend", choices=["ort", "tract"], default="ort",
                    help="run the models with onnxruntime (default) or tract 0.23.9's Python binding")
    a = ap.parse_args(argv)
    models = []
    for spec in a.model:
        label, rest = spec.split("=", 1)
        parts = rest.split(":")
        models.append((label, parts[0], parts[1] if len(parts) > 1 else None,
                       float(parts[2]) if len(parts) > 2 else None))
    if not models:
        models = default_models()
        for _, path, _, _ in models:
            if not os.path.exists(path):
                if "ssdlite" in path:
                    import make_ssdlite
                    make_ssdlite.build(path)
                else:
                    import make_nanodet
                    make_nanodet.build(path)
    scenes = build_scenes(a.per_type)
    if a.save_dir:
        from PIL import ImageDraw
        os.makedirs(a.save_dir, exist_ok=True)
        for k, (img, gts) in enumerate(scenes):
            im = Image.fromarray(img)
            d = ImageDraw.Draw(im)
            for g, tags in gts:
                d.rectangle(g, outline=(0, 255, 0), width=2)
            im.save(os.path.join(a.save_dir, f"scene_{k:03d}.png"))
    rows = []
    lat_cache = {}
    for label, path, resize, pad in models:
        det = OnnxDetector(path, resize, pad, backend=a.backend)
        r = evaluate(det, scenes)
        if path not in lat_cache:
            lat_cache[path] = det.latency_ms(a.latency_runs)
        rows.append((label, r, lat_cache[path], det))
    n_gt = rows[0][1]["all"][2] if rows else 0
    print(f"{len(scenes)} scenes 640x480, {n_gt} people; score >= {SCORE_THRESHOLD}, NMS IoU {NMS_IOU}, "
          f"match IoU >= {MATCH_IOU}; latency: {a.backend} 1 thread, median of {a.latency_runs}")
    counts = " ".join(f"{c}={rows[0][1][c][2]}" for c in CATEGORIES) if rows else ""
    print(f"people per category: {counts}")
    hdr = "| model/resize | input | recall all | small | partial | edge | occluded | normal | FP/image | latency ms |"
    print(hdr)
    print("|" + "---|" * 10)
    for label, r, lat, det in rows:
        cells = " | ".join(f"{r[c][0]:.2f}" for c in CATEGORIES)
        print(f"| {label} | {det.w}x{det.h} | {cells} | {r['fp_per_image']:.2f} | {lat:.1f} |")
    for label, r, _, _ in rows:
        print(f"found {label}: " + " ".join(f"{c}={r[c][1]}/{r[c][2]}" for c in CATEGORIES))
    return rows


if __name__ == "__main__":
    main()
