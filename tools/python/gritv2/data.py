"""PISC loader in the split format used by GRIT / GR2N.

A split is three files in `split_dir`, for prefix e.g. PISC_fine_relation_train:
  <prefix>_images.txt     one image file name a line (first whitespace-separated field)
  <prefix>_bbox.json      per image (same order; a dict keyed by file name is accepted too) a list of
                          person boxes [x1, y1, x2, y2] in pixels of the original image
  <prefix>_relation.json  per image a list of [i, j, label] (i, j index the image's boxes; label 0-based)
Images are read from `image_dir`. Default layout under a root folder (GRIT's):
  root/relation_split/PISC/<split files>   and   root/Dataset/PISC_image/<images>

Each sample is prepared exactly as kith's runtime prepares a frame: the whole image stretched to
img_size x img_size, RGB in [0, 1] (normalisation is inside the model), boxes normalised to [0, 1] of the
frame, at most N = 8 persons (extra boxes are dropped together with their relations).
Labels are bilateral: label[i, j] = label[j, i]; unlabelled pairs are -1.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "valid", "test")


def split_prefix(level: str, split: str, dataset: str = "PISC") -> str:
    assert level in ("fine", "coarse") and split in SPLITS
    return f"{dataset}_{level}_relation_{split}"


def default_dirs(root: str) -> tuple[Path, Path]:
    root = Path(root)
    split_dir = root / "relation_split" / "PISC"
    image_dir = root / "Dataset" / "PISC_image"
    if not split_dir.exists():
        split_dir = root
    if not image_dir.exists():
        image_dir = root / "images" if (root / "images").exists() else root
    return split_dir, image_dir


def read_split(split_dir, prefix: str):
    split_dir = Path(split_dir)
    with open(split_dir / f"{prefix}_images.txt") as f:
        names = [line.split()[0] for line in f if line.strip()]
    with open(split_dir / f"{prefix}_bbox.json") as f:
        bboxes = json.load(f)
    with open(split_dir / f"{prefix}_relation.json") as f:
        relations = json.load(f)
    if isinstance(bboxes, dict):
        bboxes = [bboxes[n] for n in names]
    if isinstance(relations, dict):
        relations = [relations.get(n, []) for n in names]
    if not (len(names) == len(bboxes) == len(relations)):
        raise ValueError(f"{prefix}: {len(names)} images, {len(bboxes)} box lists, {len(relations)} relation lists")
    return names, bboxes, relations


class PiscDataset(Dataset):
    def __init__(self, root: str | None, prefix: str, img_size: int = 224, train: bool = False,
                 max_persons: int = 8, split_dir: str | None = None, image_dir: str | None = None,
                 hflip: bool = True):
        sd, idir = default_dirs(root) if root else (None, None)
        self.split_dir = Path(split_dir) if split_dir else sd
        self.image_dir = Path(image_dir) if image_dir else idir
        self.names, self.bboxes, self.relations = read_split(self.split_dir, prefix)
        self.img_size, self.train, self.max_persons, self.hflip = img_size, train, max_persons, hflip
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return len(self.names)

    def all_labels(self) -> list[int]:
        out = []
        for rels in self.relations:
            out.extend(int(r[2]) for r in rels if r[0] < self.max_persons and r[1] < self.max_persons)
        return out

    def __getitem__(self, idx: int) -> dict:
        from PIL import Image

        img = Image.open(self.image_dir / self.names[idx]).convert("RGB")
        w, h = img.size
        img = img.resize((self.img_size, self.img_size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0  # H, W, 3
        n = self.max_persons
        boxes = np.zeros((n, 4), dtype=np.float32)
        mask = np.zeros((n,), dtype=np.float32)
        for k, b in enumerate(self.bboxes[idx][:n]):
            x1, y1, x2, y2 = (float(v) for v in b[:4])
            boxes[k] = [x1 / w, y1 / h, x2 / w, y2 / h]
            mask[k] = 1.0
        boxes = np.clip(boxes, 0.0, 1.0)
        labels = np.full((n, n), -1, dtype=np.int64)
        for i, j, lab in self.relations[idx]:
            if i < n and j < n and i != j:
                labels[i, j] = labels[j, i] = int(lab)  # bilateral
        if self.train and self.hflip and self.rng.random() < 0.5:
            arr = arr[:, ::-1, :]
            x1 = 1.0 - boxes[:, 2]
            x2 = 1.0 - boxes[:, 0]
            boxes[:, 0], boxes[:, 2] = x1, x2
            boxes *= mask[:, None]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))),
            "boxes": torch.from_numpy(boxes),
            "mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels),
            "index": idx,
        }


def class_weights(labels: list[int], num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency class weights from the training split, normalised to mean 1 (classes with no
    sample get weight 1)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    w = np.ones(num_classes)
    seen = counts > 0
    w[seen] = (counts[seen].sum() / (seen.sum() * counts[seen])) ** power
    w = w / w.mean()
    return torch.tensor(w, dtype=torch.float32)


def make_synthetic_pisc(out_dir: str | os.PathLike, level: str = "fine", images_per_split=(6, 3, 3),
                        num_classes: int = 6, seed: int = 0, size=(96, 72)) -> Path:
    """Write a tiny PISC-format data set (images + the three split files per split) for tests and demos.
    Persons are coloured rectangles; the relation of a pair is tied to its colours so it is learnable."""
    from PIL import Image, ImageDraw

    out = Path(out_dir)
    split_dir = out / "relation_split" / "PISC"
    image_dir = out / "Dataset" / "PISC_image"
    split_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_classes, 3))
    for split, count in zip(SPLITS, images_per_split):
        names, bbs, rels = [], [], []
        for k in range(count):
            w, h = size
            img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, size=3)))
            d = ImageDraw.Draw(img)
            n = int(rng.integers(2, 5))
            lab = int(rng.integers(0, num_classes))
            boxes = []
            for p in range(n):
                bw, bh = int(rng.integers(12, 30)), int(rng.integers(25, 60))
                x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                boxes.append([x1, y1, x1 + bw, y1 + bh])
                d.rectangle([x1, y1, x1 + bw, y1 + bh], fill=tuple(int(v) for v in palette[lab]))
            name = f"{split}_{k:03d}.jpg"
            img.save(image_dir / name, quality=95)
            names.append(name)
            bbs.append(boxes)
            rels.append([[i, j, lab] for i in range(n) for j in range(i + 1, n)])
        prefix = split_prefix(level, split)
        (split_dir / f"{prefix}_images.txt").write_text("".join(f"{n}\n" for n in names))
        (split_dir / f"{prefix}_bbox.json").write_text(json.dumps(bbs))
        (split_dir / f"{prefix}_relation.json").write_text(json.dumps(rels))
    return out


def collate(batch: list[dict]) -> dict:
    out = {k: torch.stack([b[k] for b in batch]) for k in ("image", "boxes", "mask", "labels")}
    out["index"] = torch.tensor([b["index"] for b in batch])
    return out
