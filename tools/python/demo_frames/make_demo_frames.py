#!/usr/bin/env python3
"""Writes kith's replay-demo frames and their ground truth.

Output (all under board-configs/demo/frames/ unless --out is given):
  frame_000.jpg ... frame_015.jpg   640x480 RGB, JPEG quality 85, sorted by name = time order
  ground-truth.json                 {"frames": [{"file", "persons": [[x1,y1,x2,y2], ...]}], "sources": [...]}

The people are cut from three public-domain photos shipped inside PyPI packages (see SOURCES.md
next to the frames) and pasted over a generated room backdrop (wall gradient with a little
low-frequency noise, a desk in front). Each source's person box was annotated once by hand below,
in source pixels; a pasted person's ground-truth box is that box moved by the paste's
scale/offset/mirror and clipped to what stays visible (frame edges, the desk top for people
standing behind the desk).

Deterministic: fixed seed, no timestamps or metadata; with the pinned requirements.txt two runs
give byte-identical files.

Run from the repo root:
  bash tools/python/demo_frames/setup.sh
  tools/python/.venv-demo/bin/python tools/python/demo_frames/make_demo_frames.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass

import matplotlib
import matplotlib.cbook
import numpy as np
import skimage
import skimage.data
from PIL import Image

W, H = 640, 480
JPEG_QUALITY = 85
SEED = 20240611
DESK_TOP = 398  # first frame row covered by the desk
FEATHER = 4.0  # px of soft edge on a pasted crop's artificial (non-frame) sides

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "board-configs", "demo", "frames")


# --- sources, annotated by hand ------------------------------------------------------------------
# person: full visible extent of the person in source pixels [x1, y1, x2, y2] (x2/y2 exclusive),
#         head (hair/cap) to the bottom of what is visible, shoulders/arms included, held objects
#         (helmet, camera, tripod) excluded.
# crop:   the rectangle cut out of the source and pasted (person plus a thin margin).
@dataclass(frozen=True)
class Source:
    key: str
    person: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    # Horizontal extent of the person from the head down to a source row, [(row, x1, x2), ...],
    # rows increasing, the last row being the person box's bottom (so the last entry equals the
    # box's x extent). Used when the desk or the frame bottom hides the lower part: the visible
    # box is then narrower than the full one (shoulders widen downwards). Read off the photo by
    # hand on a 50-px grid; linear in between.
    extent: tuple[tuple[int, int, int], ...]
    # Source row from which the person is cut by the photo's left/right side (None: never). When
    # that much shows, the side must sit at or beyond a frame edge, or it shows as a straight cut.
    cut_left_from: int | None = None
    cut_right_from: int | None = None

    def extent_until(self, row: float) -> tuple[float, float]:
        pts = self.extent
        if row >= pts[-1][0]:
            return float(pts[-1][1]), float(pts[-1][2])
        for (r0, a0, b0), (r1, a1, b1) in zip(pts, pts[1:]):
            if r0 <= row <= r1:
                t = (row - r0) / (r1 - r0)
                return a0 + (a1 - a0) * t, b0 + (b1 - b0) * t
        return float(pts[0][1]), float(pts[0][2])


SOURCES = {
    # Eileen Collins, 512x512: hair top y~13, orange suit x 19..366 (its right side runs behind
    # the held helmet), cut by the photo's bottom edge.
    "astronaut": Source(
        "astronaut", person=(19, 13, 367, 512), crop=(6, 2, 380, 512),
        extent=((13, 190, 260), (50, 153, 300), (100, 150, 302), (150, 133, 302), (200, 116, 304),
                (225, 100, 305), (250, 66, 326), (275, 45, 348), (300, 37, 356), (325, 34, 360),
                (350, 30, 366), (400, 22, 367), (512, 19, 367))),
    # Cameraman, 512x512 grey: hair top y~64, gloves end x~331, coat cut by the photo's left edge
    # from about row 240 down.
    "camera": Source(
        "camera", person=(0, 63, 333, 512), crop=(0, 52, 346, 512),
        extent=((63, 175, 255), (100, 133, 270), (150, 73, 300), (175, 55, 331), (200, 30, 331),
                (250, 3, 331), (300, 0, 333), (512, 0, 333)),
        cut_left_from=240),
    # Grace Hopper, 512x600: cap top y~21, uniform x 12..512; her right shoulder reaches the
    # photo's right edge from about row 455 down.
    "hopper": Source(
        "hopper", person=(12, 21, 512, 600), crop=(2, 10, 512, 600),
        extent=((21, 200, 320), (60, 158, 366), (100, 152, 370), (150, 152, 372), (340, 152, 372),
                (350, 148, 386), (360, 124, 410), (370, 78, 438), (380, 52, 469), (390, 50, 488),
                (400, 42, 495), (420, 30, 501), (440, 27, 508), (455, 27, 512), (480, 24, 512),
                (500, 22, 512), (550, 16, 512), (600, 12, 512)),
        cut_right_from=455),
}


def load_sources() -> dict[str, np.ndarray]:
    imgs = {
        "astronaut": skimage.data.astronaut(),
        "camera": np.repeat(skimage.data.camera()[:, :, None], 3, axis=2),
        "hopper": np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")),
    }
    for k, a in imgs.items():
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3, k
    return imgs


def source_provenance(imgs: dict[str, np.ndarray]) -> list[dict]:
    sk_dir = os.path.dirname(skimage.data.__file__)
    mpl_file = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))

    def sha(path: str) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    info = {
        "astronaut": dict(
            package="scikit-image", version=skimage.__version__, path="skimage/data/astronaut.png",
            file=os.path.join(sk_dir, "astronaut.png"), loader="skimage.data.astronaut()",
            subject="Eileen Collins, NASA astronaut", author="NASA",
            licence="public domain (work of the US federal government; scikit-image: 'No known copyright restrictions, released into the public domain')"),
        "camera": dict(
            package="scikit-image", version=skimage.__version__, path="skimage/data/camera.png",
            file=os.path.join(sk_dir, "camera.png"), loader="skimage.data.camera()",
            subject="'cameraman' (photographer with a tripod camera)", author="Lav Varshney",
            licence="CC0 (scikit-image: 'No copyright restrictions. CC0 by the photographer (Lav Varshney).')"),
        "hopper": dict(
            package="matplotlib", version=matplotlib.__version__, path="matplotlib/mpl-data/sample_data/grace_hopper.jpg",
            file=mpl_file, loader="matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
            subject="Commodore Grace M. Hopper, USN", author="US Navy (official portrait)",
            licence="public domain (work of the US federal government; JPEG comment names Wikimedia Commons File:Grace_Hopper.jpg)"),
    }
    out = []
    for k in ("astronaut", "camera", "hopper"):
        d = dict(info[k])
        d["sha256"] = sha(d.pop("file"))
        d["id"] = k
        d["size"] = [int(imgs[k].shape[1]), int(imgs[k].shape[0])]
        d["person_box"] = list(SOURCES[k].person)
        d["crop"] = list(SOURCES[k].crop)
        out.append(d)
    return out


# --- scenes ---------------------------------------------------------------------------------------
# A person in a scene: source, mirrored, layer ("back" = behind the desk, "front" = in front of it,
# reaching the frame bottom), and its pose at the scene's first and last frame: (person-box centre
# x, head top y, scale in frame px per source px). The visible height follows: desk top (back) or
# frame bottom (front) minus head top. Poses in between are eased, plus a little deterministic
# jitter, so the people shift a few to tens of pixels per frame.
@dataclass(frozen=True)
class Actor:
    src: str
    flip: bool
    layer: str
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    edge: str = ""  # "left"/"right": pinned to (and partly cut by) that frame edge; x is ignored


SCENES: list[tuple[int, list[Actor]]] = [
    # 2 people, frames 000-004: astronaut large in front on the left (~400 px), Hopper behind the
    # desk on the right.
    (5, [
        Actor("hopper", False, "back", start=(480, 150, 0.60), end=(492, 160, 0.60)),
        Actor("astronaut", False, "front", start=(185, 86, 0.80), end=(166, 78, 0.82)),
    ]),
    # 3 people, frames 005-009: cameraman behind the desk at the left frame edge (the one person
    # cut by a frame edge), astronaut in front in the middle, a mirrored small Hopper behind the
    # desk on the right.
    (5, [
        Actor("camera", False, "back", start=(0, 142, 0.72), end=(0, 132, 0.74), edge="left"),
        Actor("hopper", True, "back", start=(550, 262, 0.33), end=(556, 256, 0.34)),
        Actor("astronaut", False, "front", start=(356, 200, 0.60), end=(362, 190, 0.61)),
    ]),
    # 4 people, frames 010-015: two astronauts (one mirrored, at another scale) and two Hoppers
    # (one mirrored, at another scale), all between ~120 and ~180 px tall.
    (6, [
        Actor("hopper", False, "back", start=(250, 276, 0.36), end=(246, 270, 0.365)),
        Actor("astronaut", True, "back", start=(82, 250, 0.46), end=(90, 244, 0.47)),
        Actor("hopper", True, "back", start=(554, 272, 0.36), end=(558, 266, 0.36)),
        Actor("astronaut", False, "front", start=(408, 304, 0.40), end=(402, 298, 0.41)),
    ]),
]


@dataclass
class Paste:
    src: str
    flip: bool
    layer: str
    ox: int  # frame position of the crop's top-left corner
    oy: int
    cw: int  # crop size in the frame
    ch: int

    @property
    def source(self) -> Source:
        return SOURCES[self.src]

    @property
    def crop(self):
        return self.source.crop

    @property
    def sx(self) -> float:
        return self.cw / (self.crop[2] - self.crop[0])

    @property
    def sy(self) -> float:
        return self.ch / (self.crop[3] - self.crop[1])

    @property
    def bottom_limit(self) -> int:
        return DESK_TOP if self.layer == "back" else H

    def to_frame_x(self, x1: float, x2: float) -> tuple[float, float]:
        c = self.crop
        if self.flip:
            x1, x2 = c[2] - x2, c[2] - x1
        else:
            x1, x2 = x1 - c[0], x2 - c[0]
        return self.ox + x1 * self.sx, self.ox + x2 * self.sx

    def to_frame_y(self, y: float) -> float:
        return self.oy + (y - self.crop[1]) * self.sy

    def to_source_y(self, y: float) -> float:
        return self.crop[1] + (y - self.oy) / self.sy

    def person_box(self) -> tuple[float, float, float, float]:
        """The annotated full person box in frame pixels, unclipped."""
        p = self.source.person
        x1, x2 = self.to_frame_x(p[0], p[2])
        return (x1, self.to_frame_y(p[1]), x2, self.to_frame_y(p[3]))

    def visible_src_bottom(self) -> float:
        """Last source row that shows (above the desk for the back layer, the frame bottom else)."""
        return min(float(self.source.person[3]), self.to_source_y(self.bottom_limit))

    def visible_box(self) -> tuple[float, float, float, float]:
        """Ground truth: the person's extent down to the last visible row, clipped to the frame."""
        p = self.source.person
        r = self.visible_src_bottom()
        ex1, ex2 = self.source.extent_until(r)
        x1, x2 = self.to_frame_x(ex1, ex2)
        y1, y2 = self.to_frame_y(p[1]), self.to_frame_y(r)
        return (max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(self.bottom_limit), y2))

    def crop_rect(self) -> tuple[int, int, int, int]:
        """Pasted rectangle in frame pixels, clipped to the frame (and to the desk for the back)."""
        return (max(0, self.ox), max(0, self.oy), min(W, self.ox + self.cw), min(self.bottom_limit, self.oy + self.ch))


def place(actor: Actor, cx: float, top: float, scale: float) -> Paste:
    s = SOURCES[actor.src]
    c, p = s.crop, s.person
    cw = int(round((c[2] - c[0]) * scale))
    ch = int(round((c[3] - c[1]) * scale))
    probe = Paste(actor.src, actor.flip, actor.layer, 0, 0, cw, ch)
    oy = int(round(top - probe.to_frame_y(p[1])))
    probe.oy = oy
    ex1, ex2 = s.extent_until(probe.visible_src_bottom())
    vx1, vx2 = probe.to_frame_x(ex1, ex2)
    if actor.edge == "left":
        ox = int(round(-vx1))  # the person's cut side on the frame's left edge
    elif actor.edge == "right":
        ox = int(round(W - vx2))
    else:
        ox = int(round(cx - (vx1 + vx2) / 2))
    return Paste(actor.src, actor.flip, actor.layer, ox, oy, cw, ch)


def resized_crop(img: np.ndarray, paste: Paste, cache: dict) -> np.ndarray:
    key = (paste.src, paste.flip, paste.cw, paste.ch)
    if key not in cache:
        c = paste.crop
        im = Image.fromarray(img[c[1]:c[3], c[0]:c[2]])
        if paste.flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im = im.resize((paste.cw, paste.ch), Image.Resampling.LANCZOS)
        cache[key] = np.asarray(im).astype(np.float32)
    return cache[key]


def edge_alpha(paste: Paste) -> np.ndarray:
    """Alpha for the pasted crop: 1 inside, ramping to 0 over FEATHER px on the artificial sides
    (sides that lie inside the frame); the bottom is always hidden by the desk or the frame."""
    h, w = paste.ch, paste.cw
    xs = np.arange(w, dtype=np.float32) + 0.5
    ys = np.arange(h, dtype=np.float32) + 0.5
    ax = np.ones(w, np.float32)
    if paste.ox > 0:
        ax = np.minimum(ax, xs / FEATHER)
    if paste.ox + w < W:
        ax = np.minimum(ax, (w - xs) / FEATHER)
    ay = np.ones(h, np.float32)
    if paste.oy > 0:
        ay = np.minimum(ay, ys / FEATHER)
    return np.clip(ay[:, None] * ax[None, :], 0.0, 1.0)


def backdrop(rng: np.random.Generator) -> np.ndarray:
    """A plain room: warm wall with a soft diagonal light gradient and faint low-frequency mottling,
    a skirting line, and a wooden desk across the bottom (drawn later, over the back layer)."""
    y = (np.arange(H, dtype=np.float32)[:, None] + 0.5) / H
    x = (np.arange(W, dtype=np.float32)[None, :] + 0.5) / W
    light = 1.0 - 0.16 * y - 0.10 * (x - 0.3) ** 2 * 4 - 0.05 * x
    base = np.array([206.0, 198.0, 184.0], np.float32)
    wall = light[:, :, None] * base[None, None, :]
    low = rng.normal(0.0, 1.0, size=(13, 17)).astype(np.float32)
    low_img = Image.fromarray(low).resize((W, H), Image.Resampling.BICUBIC)
    wall += 3.0 * np.asarray(low_img, np.float32)[:, :, None]
    return wall


def draw_desk(frame: np.ndarray) -> None:
    rows = np.arange(DESK_TOP, H, dtype=np.float32)
    x = (np.arange(W, dtype=np.float32)[None, :] + 0.5) / W
    top_h = 10
    t = (rows - DESK_TOP)[:, None]
    # top surface: lighter wood catching the light; front face: darker, a bit darker downwards
    topc = np.array([158.0, 118.0, 82.0], np.float32)
    frontc = np.array([112.0, 80.0, 56.0], np.float32)
    is_top = t < top_h
    shade = np.where(is_top, 1.0 - 0.015 * t, 1.0 - 0.25 * (t - top_h) / (H - DESK_TOP)) * (1.0 - 0.08 * x)
    col = np.where(is_top[:, :, None], topc, frontc) * shade[:, :, None]
    # edge highlight between top and front
    col[top_h - 1 : top_h + 1] = col[top_h - 1 : top_h + 1] * 0.7
    # faint horizontal grain, deterministic
    grain = 3.0 * np.sin(rows[:, None] * 0.9 + 7.0 * np.sin(x * 5.0 + rows[:, None] * 0.05))
    frame[DESK_TOP:H] = col + grain[:, :, None]


def jitter(rng: np.random.Generator, n: int, amp: float) -> np.ndarray:
    return rng.uniform(-amp, amp, size=n)


def build(out_dir: str) -> list[dict]:
    rng = np.random.default_rng(SEED)
    imgs = load_sources()
    wall = backdrop(rng)
    cache: dict = {}
    frames = []
    idx = 0
    for n, actors in SCENES:
        jit = {i: (jitter(rng, n, 2.0), jitter(rng, n, 1.5), jitter(rng, n, 0.006)) for i in range(len(actors))}
        for k in range(n):
            t = k / (n - 1)
            # ease in/out so the shift looks like a person settling, not a slide
            t = 0.5 - 0.5 * math.cos(math.pi * t)
            pastes = []
            for i, a in enumerate(actors):
                cx, top, scale = (a.start[j] + (a.end[j] - a.start[j]) * t for j in range(3))
                cx += jit[i][0][k]
                top += jit[i][1][k]
                scale *= 1.0 + jit[i][2][k]
                pastes.append(place(a, cx, top, scale))
            frame = wall.copy()
            order = [p for p in pastes if p.layer == "back"]
            for p in order:
                composite(frame, imgs[p.src], p, cache)
            draw_desk(frame)
            for p in pastes:
                if p.layer == "front":
                    composite(frame, imgs[p.src], p, cache)
            check_layout(idx, pastes)
            name = f"frame_{idx:03d}.jpg"
            out = Image.fromarray(np.clip(np.rint(frame), 0, 255).astype(np.uint8), "RGB")
            out.save(os.path.join(out_dir, name), "JPEG", quality=JPEG_QUALITY, optimize=False,
                     progressive=False, subsampling="4:2:0")
            boxes = [[int(round(v)) for v in p.visible_box()] for p in pastes]
            boxes.sort(key=lambda b: (b[0], b[1]))
            frames.append({"file": name, "persons": boxes})
            idx += 1
    return frames, source_provenance(imgs)


def composite(frame: np.ndarray, img: np.ndarray, p: Paste, cache: dict) -> None:
    crop = resized_crop(img, p, cache)
    alpha = edge_alpha(p)
    x1, y1, x2, y2 = p.crop_rect()
    if x2 <= x1 or y2 <= y1:
        return
    sx1, sy1 = x1 - p.ox, y1 - p.oy
    sub = crop[sy1 : sy1 + (y2 - y1), sx1 : sx1 + (x2 - x1)]
    a = alpha[sy1 : sy1 + (y2 - y1), sx1 : sx1 + (x2 - x1)][:, :, None]
    frame[y1:y2, x1:x2] = a * sub + (1.0 - a) * frame[y1:y2, x1:x2]


def area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def inter(a, b) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def check_layout(idx: int, pastes: list[Paste]) -> None:
    """Guards the promises the ground truth makes: every person inside the frame and mostly
    unoccluded, at most one cut by a frame edge, no straight source cuts showing inside the frame,
    no floating bottoms, sizes in range."""
    drawn = [p for p in pastes if p.layer == "back"] + [p for p in pastes if p.layer == "front"]
    cut = 0
    for i, p in enumerate(drawn):
        vb = p.visible_box()
        h = vb[3] - vb[1]
        assert 110 <= h <= 410, (idx, p.src, "height", h)
        # sources end at their bottom: the crop must reach the desk (back) / frame bottom (front)
        assert p.oy + p.ch >= p.bottom_limit, (idx, p.src, "floating bottom")
        assert p.person_box()[1] >= 0, (idx, p.src, "head above the frame")
        r = p.visible_src_bottom()
        ex1, ex2 = p.source.extent_until(r)
        fx1, fx2 = p.to_frame_x(ex1, ex2)
        if fx1 < 0.5 or fx2 > W - 0.5:
            cut += 1
            assert (vb[2] - vb[0]) >= 0.6 * (fx2 - fx1), (idx, p.src, "mostly outside")
        s = p.source
        cut_l = s.cut_left_from is not None and r > s.cut_left_from
        cut_r = s.cut_right_from is not None and r > s.cut_right_from
        if p.flip:
            cut_l, cut_r = cut_r, cut_l
        if cut_l:
            assert fx1 <= 0.5, (idx, p.src, "the photo's cut side shows on the left", fx1)
        if cut_r:
            assert fx2 >= W - 0.5, (idx, p.src, "the photo's cut side shows on the right", fx2)
        # occlusion by anything drawn later (its whole pasted rectangle counts)
        occ = sum(inter(vb, q.crop_rect()) for q in drawn[i + 1:])
        assert occ <= 0.03 * area(vb), (idx, p.src, "occluded", occ / area(vb))
        for q in drawn[:i]:
            assert inter(vb, q.visible_box()) <= 0.03 * area(vb), (idx, p.src, "overlaps another person")
    assert cut <= 1, (idx, "more than one person cut by a frame edge")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    frames, sources = build(args.out)
    gt = {
        "comment": "Person boxes [x1, y1, x2, y2] in frame pixels (x2/y2 exclusive), one list per frame; "
                   "generated by tools/python/demo_frames/make_demo_frames.py, see SOURCES.md.",
        "width": W,
        "height": H,
        "frames": frames,
        "sources": sources,
    }
    with open(os.path.join(args.out, "ground-truth.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(gt, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, fr["file"])) for fr in frames)
    for fr in frames:
        print(fr["file"], len(fr["persons"]), fr["persons"])
    print(f"{len(frames)} frames, {total} bytes of JPEG in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
