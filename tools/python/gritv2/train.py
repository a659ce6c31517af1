"""Train GRITv2-S on PISC (for users who have the data set; none is shipped or downloadable here).

Loss: weighted binary cross-entropy over the K classes of every annotated pair, class weights from the
training split (inverse frequency), bilateral masking (each annotated pair counts in both directions).
Optional knowledge distillation from a larger teacher checkpoint (e.g. GRITv2 with a tiny_vit_21m_224
backbone, --config gritv2-s21): KL(teacher || student) on the pair logits at temperature T.
After training: evaluation on the validation split, then optional ONNX export and INT8 quantisation.

    python train.py --data-root PISC --epochs 50 --out runs/gritv2-s.pt --export runs/gritv2-s.fp32.onnx
    python train.py --data-root PISC --config gritv2-s21 --out runs/teacher.pt         # a teacher
    python train.py --data-root PISC --teacher runs/teacher.pt --kd-alpha 0.5 --out runs/student.pt
    python train.py --data-root PISC --backbone-weights tiny_vit_11m_22kto1k.pth ...   # ImageNet init

No pretrained weights can be fetched by this tool: pass a TinyViT state dict file with --backbone-weights.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import PiscDataset, class_weights, collate, split_prefix  # noqa: E402
from evaluate import evaluate_model  # noqa: E402
from model import CONFIGS, GritConfig, GRITv2, load_checkpoint, save_checkpoint  # noqa: E402


def relation_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted BCE over annotated pairs. logits [B, N, N, K], labels [B, N, N] with -1 = unannotated
    (already bilateral: both (i, j) and (j, i) carry the label)."""
    k = logits.shape[-1]
    valid = labels >= 0
    if not valid.any():
        return logits.sum() * 0.0
    lg = logits[valid]  # [P, K]
    target = F.one_hot(labels[valid], k).to(lg.dtype)
    bce = F.binary_cross_entropy_with_logits(lg, target, reduction="none")  # [P, K]
    # weight of a pair = weight of its class (applied to all K terms of that pair)
    w = weights.to(lg.device)[labels[valid]].unsqueeze(1)
    return (bce * w).sum(dim=1).mean()


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """KL(teacher || student) on the pair logits of all pairs of present persons (i != j)."""
    n = mask.shape[1]
    pm = mask.unsqueeze(2) * mask.unsqueeze(1) * (1 - torch.eye(n, device=mask.device))
    sel = pm > 0.5
    if not sel.any():
        return student.sum() * 0.0
    s = F.log_softmax(student[sel] / temperature, dim=-1)
    t = F.softmax(teacher[sel] / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean") * temperature ** 2


def load_backbone_weights(model: GRITv2, path: str) -> None:
    sd = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(sd, dict) and "model" in sd:
        sd = sd["model"]
    sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    missing, unexpected = model.backbone.load_state_dict(sd, strict=False)
    print(f"backbone weights {path}: {len(missing)} missing, {len(unexpected)} unexpected keys")


def build_argparser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", help="PISC root (GRIT layout: relation_split/PISC, Dataset/PISC_image)")
    ap.add_argument("--split-dir", help="folder with the split files (overrides --data-root)")
    ap.add_argument("--image-dir", help="folder with the images (overrides --data-root)")
    ap.add_argument("--level", default="fine", choices=["fine", "coarse"], help="PISC-fine (6) or coarse (3)")
    ap.add_argument("--config", default="gritv2-s", choices=sorted(CONFIGS), help="model configuration")
    ap.add_argument("--resume", help="start from this checkpoint (its config wins over --config)")
    ap.add_argument("--backbone-weights", help="TinyViT state dict (timm key names) to initialise the backbone")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many optimiser steps (0 = no cap)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4, help="learning rate of the head (GQM, TRM, MLP)")
    ap.add_argument("--backbone-lr", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--grad-clip", type=float, default=0.1)
    ap.add_argument("--no-class-weights", action="store_true", help="plain BCE")
    ap.add_argument("--no-hflip", action="store_true", help="no horizontal-flip augmentation")
    ap.add_argument("--shuffle", default=True, action=argparse.BooleanOptionalAction)
    ap.add_argument("--teacher", help="teacher checkpoint for knowledge distillation")
    ap.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the KD term (loss = (1-a) BCE + a KD)")
    ap.add_argument("--kd-temp", type=float, default=2.0)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-split", default="valid", choices=["valid", "test", "none"])
    ap.add_argument("--out", default="runs/gritv2-s.pt", help="checkpoint path (best on eval split, else last)")
    ap.add_argument("--export", help="after training, export the best checkpoint to this FP32 ONNX path")
    ap.add_argument("--quantize", help="after --export, write the INT8 ONNX here (synthetic calibration "
                                       "unless --calib-from-train)")
    ap.add_argument("--calib-from-train", action="store_true", help="calibrate INT8 on training images")
    ap.add_argument("--weights-name", default=None, help="kith.weights metadata for the exported files")
    ap.add_argument("--log-every", type=int, default=20)
    return ap


def train(args) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.resume:
        model = load_checkpoint(args.resume)
    else:
        cfg = GritConfig.from_dict(CONFIGS[args.config].to_dict())
        cfg.num_classes = 6 if args.level == "fine" else 3
        model = GRITv2(cfg)
    if args.backbone_weights:
        load_backbone_weights(model, args.backbone_weights)
    model.to(device)
    n_classes = model.cfg.num_classes

    train_ds = PiscDataset(args.data_root, split_prefix(args.level, "train"), img_size=model.cfg.img_size,
                           train=True, split_dir=args.split_dir, image_dir=args.image_dir,
                           hflip=not args.no_hflip)
    eval_ds = None
    if args.eval_split != "none":
        eval_ds = PiscDataset(args.data_root, split_prefix(args.level, args.eval_split),
                              img_size=model.cfg.img_size, split_dir=args.split_dir, image_dir=args.image_dir)
    weights = (torch.ones(n_classes) if args.no_class_weights
               else class_weights(train_ds.all_labels(), n_classes))
    print("class weights:", [round(float(w), 3) for w in weights])
    gen = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=args.shuffle,
                                         num_workers=args.num_workers, collate_fn=collate, generator=gen,
                                         drop_last=len(train_ds) > args.batch_size)
    teacher = None
    if args.teacher:
        teacher = load_checkpoint(args.teacher).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    bb = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.AdamW([{"params": rest, "lr": args.lr}, {"params": bb, "lr": args.backbone_lr}],
                            weight_decay=args.weight_decay)
    steps_per_epoch = max(1, len(loader))
    total = args.epochs * steps_per_epoch
    if args.max_steps:
        total = min(total, args.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    history = {"loss": [], "eval": []}
    best, step, t0 = -1.0, 0, time.time()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(args.epochs):
        model.train()
        for batch in loader:
            img, boxes = batch["image"].to(device), batch["boxes"].to(device)
            mask, labels = batch["mask"].to(device), batch["labels"].to(device)
            logits = model(img, boxes, mask)
            loss = relation_loss(logits, labels, weights)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(img, boxes, mask)
                loss = (1 - args.kd_alpha) * loss + args.kd_alpha * kd_loss(logits, t_logits, labels, mask,
                                                                          args.kd_temp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            sched.step()
            step += 1
            history["loss"].append(float(loss.detach()))
            if step % args.log_every == 0 or step == 1:
                print(f"epoch {epoch} step {step}/{total} loss {float(loss.detach()):.4f} ({time.time() - t0:.0f}s)")
            if args.max_steps and step >= args.max_steps:
                break
        if eval_ds is not None:
            m = evaluate_model(model, eval_ds, batch_size=args.batch_size, device=device)
            m["epoch"] = epoch
            history["eval"].append(m)
            print(f"epoch {epoch} {args.eval_split}: accuracy {m['accuracy']:.4f} mAP {m['mAP']:.4f}")
            score = m["mAP"] if not math.isnan(m["mAP"]) else 0.0
            if score > best:
                best = score
                save_checkpoint(model.cpu(), str(out), epoch=epoch, metrics=m)
                model.to(device)
        if args.max_steps and step >= args.max_steps:
            break
    if eval_ds is None or best < 0:
        save_checkpoint(model.cpu(), str(out), epoch=epoch)
    (out.with_suffix(".history.json")).write_text(json.dumps(history, indent=1) + "\n")

    if args.export:
        from export import export_onnx

        best_model = load_checkpoint(str(out))
        weights_name = args.weights_name or f"trained:{out.name}"
        rep = export_onnx(best_model, args.export, weights=weights_name,
                          check_ort=best_model.cfg.num_persons == 8)
        history["export"] = {k: v for k, v in rep.items() if k != "ops"}
        if args.quantize:
            from quantize import ListReader, SyntheticReader, quantize

            if args.calib_from_train:
                items = []
                calib_ds = PiscDataset(args.data_root, split_prefix(args.level, "train"),
                                       img_size=best_model.cfg.img_size, split_dir=args.split_dir,
                                       image_dir=args.image_dir)
                for k in range(min(32, len(calib_ds))):
                    s = calib_ds[k]
                    items.append({"image": s["image"][None].numpy(), "boxes": s["boxes"][None].numpy(),
                                  "mask": s["mask"][None].numpy()})
                reader = ListReader(items)
            else:
                reader = SyntheticReader(32, size=best_model.cfg.img_size,
                                         num_persons=best_model.cfg.num_persons)
            history["quantize"] = quantize(args.export, args.quantize, reader, weights=weights_name)
    return history


def main(argv=None):
    args = build_argparser().parse_args(argv)
    if not (args.data_root or args.split_dir):
        raise SystemExit("need --data-root or --split-dir/--image-dir (PISC is not shipped)")
    return train(args)


if __name__ == "__main__":
    main()
