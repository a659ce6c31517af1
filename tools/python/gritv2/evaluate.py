"""Evaluate a GRITv2 checkpoint or ONNX file on a PISC split: per-pair accuracy and mAP (mean over classes of
the average precision of the softmax scores, as GRIT reports it). Each annotated pair counts once (i < j).

    python evaluate.py --data-root PISC --split test --checkpoint runs/gritv2-s.pt
    python evaluate.py --data-root PISC --split test --onnx models/gritv2-s.int8.onnx
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import PiscDataset, collate, split_prefix  # noqa: E402


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over the ranking by decreasing score (sklearn's definition, ties
    grouped). NaN when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], pos[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    # keep the last index of each group of equal scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def pair_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """logits [M, N, N, K], labels [M, N, N] (-1 = unlabelled, bilateral) -> accuracy, mAP, per-class AP."""
    iu, ju = np.triu_indices(labels.shape[1], k=1)
    lab = labels[:, iu, ju].reshape(-1)
    lg = logits[:, iu, ju, :].reshape(-1, num_classes)
    keep = lab >= 0
    lab, lg = lab[keep], lg[keep]
    if len(lab) == 0:
        return {"pairs": 0, "accuracy": float("nan"), "mAP": float("nan"), "ap": [float("nan")] * num_classes}
    z = lg - lg.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    acc = float((prob.argmax(axis=1) == lab).mean())
    aps = [average_precision(prob[:, c], lab == c) for c in range(num_classes)]
    valid = [a for a in aps if not np.isnan(a)]
    return {"pairs": int(len(lab)), "accuracy": acc, "mAP": float(np.mean(valid)) if valid else float("nan"),
            "ap": aps}


@torch.no_grad()
def predict_torch(model, loader, device="cpu"):
    model.eval()
    all_logits, all_labels = [], []
    for batch in loader:
        lg = model(batch["image"].to(device), batch["boxes"].to(device), batch["mask"].to(device))
        all_logits.append(lg.float().cpu().numpy())
        all_labels.append(batch["labels"].numpy())
    return np.concatenate(all_logits), np.concatenate(all_labels)


def predict_onnx(path, dataset):
    import onnx_utils as U

    sess = U.ort_session(path)
    all_logits, all_labels = [], []
    for k in range(len(dataset)):
        s = dataset[k]
        inp = {"image": s["image"][None].numpy(), "boxes": s["boxes"][None].numpy(), "mask": s["mask"][None].numpy()}
        all_logits.append(U.ort_run(sess, inp))
        all_labels.append(s["labels"][None].numpy())
    return np.concatenate(all_logits), np.concatenate(all_labels)


def evaluate_model(model, dataset, batch_size=8, num_workers=0, device="cpu") -> dict:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate)
    logits, labels = predict_torch(model, loader, device)
    return pair_metrics(logits, labels, model.cfg.num_classes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", help="PISC root (GRIT layout: relation_split/PISC, Dataset/PISC_image)")
    ap.add_argument("--split-dir", help="folder with the split files (overrides --data-root)")
    ap.add_argument("--image-dir", help="folder with the images (overrides --data-root)")
    ap.add_argument("--level", default="fine", choices=["fine", "coarse"])
    ap.add_argument("--split", default="test", choices=["train", "valid", "test"])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="checkpoint written by train.py")
    g.add_argument("--onnx", help="ONNX file (FP32 or INT8), run with onnxruntime")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", help="write the metrics here as JSON")
    args = ap.parse_args(argv)

    from model import load_checkpoint

    prefix = split_prefix(args.level, args.split)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        ds = PiscDataset(args.data_root, prefix, img_size=model.cfg.img_size, split_dir=args.split_dir,
                         image_dir=args.image_dir)
        m = evaluate_model(model, ds, args.batch_size)
    else:
        ds = PiscDataset(args.data_root, prefix, split_dir=args.split_dir, image_dir=args.image_dir)
        logits, labels = predict_onnx(args.onnx, ds)
        m = pair_metrics(logits, labels, logits.shape[-1])
    print(json.dumps(m, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1) + "\n")
    return m


if __name__ == "__main__":
    main()
