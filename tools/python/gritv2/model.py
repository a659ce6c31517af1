"""GRITv2-S in PyTorch, written for kith (arXiv 2403.06895, "GRITv2: Efficient and Light-weight Social
Relation Recognition").

Modules:
  * feature extraction: TinyViT from timm (last stage, stride 32: [B, C, 7, 7] at 224 px) followed by a
    squeeze-excitation (SE) block;
  * person features: box-overlap pooling. For every person box the overlap area between the box and every
    cell of the 7x7 grid is computed in the graph from the box coordinates, normalised to sum to 1, and
    multiplied with the flattened feature map (a MatMul: no GridSample / RoIAlign, which tract lacks);
  * GQM: 2 graph layers with the bilateral mask A = M + M^T, edges start as the global average pool,
    relation queries come from the edge features e_ij -> Linear(C -> D) (the GRITv2 change);
  * TRM: DETR-style pre-norm transformer, 1x1 conv C -> D, learned 2D position embedding, encoder over the
    H*W image tokens, decoder over the N*N pair queries with a learned query position embedding and a
    key-padding mask built from the person mask;
  * head: MLP D -> 128 -> LeakyReLU -> K, then the symmetric logit transform (l_ij + l_ji) / 2.

Every layer is constructed separately from a seeded RNG so that no two layers share weights.
Inputs are the ones kith's runtime feeds: `image` RGB in [0, 1] (ImageNet normalisation happens inside),
`boxes` x1, y1, x2, y2 normalised to [0, 1], `mask` 1 = person present.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

FINE_LABELS = ["friends", "family", "couple", "professional", "commercial", "no relation"]
COARSE_OF_FINE = ["intimate", "intimate", "intimate", "non-intimate", "non-intimate", "no relation"]
COARSE_LABELS = ["intimate", "non-intimate", "no relation"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Additive attention mask value for masked keys. Finite (not -inf) so that a query whose keys are all
# masked (an image with 0 or 1 person) gets a uniform softmax instead of NaN.
MASK_NEG = -1.0e4


@dataclass
class GritConfig:
    backbone: str = "tiny_vit_11m_224"
    img_size: int = 224
    num_persons: int = 8
    num_classes: int = 6
    d_model: int = 256
    nheads: int = 8
    enc_layers: int = 3
    dec_layers: int = 3
    ffn_dim: int = 2048
    gqm_layers: int = 2
    se_reduction: int = 16
    head_hidden: int = 128
    dropout: float = 0.1
    leaky_slope: float = 0.01
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GritConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# GRITv2-S as shipped, and a much smaller configuration for the tests (same code path).
CONFIGS = {
    "gritv2-s": GritConfig(),
    # teacher for knowledge distillation (a larger TinyViT, same head)
    "gritv2-s21": GritConfig(backbone="tiny_vit_21m_224"),
    "test-tiny": GritConfig(backbone="tiny_vit_5m_224", img_size=112, d_model=32, nheads=4, enc_layers=1, dec_layers=1,
                            ffn_dim=64, gqm_layers=2, head_hidden=16, dropout=0.0),
}


def make_backbone(name: str, img_size: int) -> nn.Module:
    import timm

    # timm's TinyViT takes any input size (its windowed attention pads); img_size only sets the feature grid.
    net = timm.create_model(name, pretrained=False, num_classes=0)
    # The classifier head (norm + fc) is never used: forward_features gives the last stage's map.
    net.head = nn.Identity()
    # Explicit q @ k^T, + bias, softmax, @ v instead of F.scaled_dot_product_attention: a plainer ONNX
    # graph (the exporter otherwise emits SDPA's decomposition with extra Sqrt/Mul nodes).
    for m in net.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return net


class SEBlock(nn.Module):
    """Squeeze-excitation on [B, C, H, W], 1x1 convs so the graph has Conv, not Gemm."""

    def __init__(self, c: int, reduction: int):
        super().__init__()
        hidden = max(8, c // reduction)
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


def box_cell_weights(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Overlap area of every box with every cell of an h x w grid over [0, 1]^2, normalised per box.

    boxes [B, N, 4] (x1, y1, x2, y2 in [0, 1]) -> weights [B, N, h*w] (rows sum to 1, or 0 for empty boxes).
    """
    dev, dt = boxes.device, boxes.dtype
    xs = torch.arange(w, device=dev, dtype=dt)
    ys = torch.arange(h, device=dev, dtype=dt)
    cx1, cx2 = xs / w, (xs + 1) / w  # [w]
    cy1, cy2 = ys / h, (ys + 1) / h  # [h]
    x1, y1, x2, y2 = boxes[..., 0:1], boxes[..., 1:2], boxes[..., 2:3], boxes[..., 3:4]  # [B, N, 1]
    ox = (torch.minimum(x2, cx2) - torch.maximum(x1, cx1)).clamp(min=0.0)  # [B, N, w]
    oy = (torch.minimum(y2, cy2) - torch.maximum(y1, cy1)).clamp(min=0.0)  # [B, N, h]
    area = oy.unsqueeze(-1) * ox.unsqueeze(-2)  # [B, N, h, w]
    area = area.flatten(2)
    return area / (area.sum(dim=-1, keepdim=True) + 1e-8)


class GQMLayer(nn.Module):
    def __init__(self, c: int, slope: float):
        super().__init__()
        self.w_n = nn.Linear(c, c)
        self.w_e = nn.Linear(c, c)
        self.slope = slope

    def forward(self, n: torch.Tensor, e: torch.Tensor, a: torch.Tensor):
        # n [B, N, C], e [B, N, N, C] (or broadcastable [B, 1, 1, C]), a [B, N, N]
        n2 = self.w_n(n)
        e2 = self.w_e(e)
        e_new = F.leaky_relu(n2.unsqueeze(2) + n2.unsqueeze(1) + e2, self.slope)  # [B, N, N, C]
        # m_i = (n'_i + sum_j e_ij * n'_j * A_ij) / (sum_j A_ij + 1)
        msg = (e_new * n2.unsqueeze(1) * a.unsqueeze(-1)).sum(dim=2)
        m = (n2 + msg) / (a.sum(dim=2, keepdim=True) + 1.0)
        n_new = n + F.leaky_relu(m, self.slope)
        return n_new, e_new


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (MatMul + Add in ONNX)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        assert d % heads == 0
        self.h = heads
        self.dh = d // heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, q_in, k_in, v_in, key_bias=None):
        b, lq, d = q_in.shape
        lk = k_in.shape[1]
        q = (self.q(q_in) * (self.dh ** -0.5)).reshape(b, lq, self.h, self.dh).transpose(1, 2)
        k = self.k(k_in).reshape(b, lk, self.h, self.dh).permute(0, 2, 3, 1)  # [B, h, dh, Lk]
        v = self.v(v_in).reshape(b, lk, self.h, self.dh).transpose(1, 2)
        att = torch.matmul(q, k)  # [B, h, Lq, Lk]
        if key_bias is not None:
            att = att + key_bias  # [B, 1, 1, Lk]
        att = self.drop(att.softmax(dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, lq, d)
        return self.o(out)


class FFN(nn.Module):
    def __init__(self, d: int, ffn: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """DETR encoder layer, pre-norm (normalize_before=True)."""

    def __init__(self, d, heads, ffn, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FFN(d, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pos):
        t = self.norm1(x)
        qk = t + pos
        x = x + self.drop(self.attn(qk, qk, t))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x


class DecoderLayer(nn.Module):
    """DETR decoder layer, pre-norm."""

    def __init__(self, d, heads, ffn, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = Attention(d, heads, dropout)
        self.norm2 = nn.LayerNorm(d)
        self.cross_attn = Attention(d, heads, dropout)
        self.norm3 = nn.LayerNorm(d)
        self.ffn = FFN(d, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, t, memory, qpos, mpos, key_bias):
        x = self.norm1(t)
        qk = x + qpos
        t = t + self.drop(self.self_attn(qk, qk, x, key_bias))
        x = self.norm2(t)
        t = t + self.drop(self.cross_attn(x + qpos, memory + mpos, memory))
        t = t + self.drop(self.ffn(self.norm3(t)))
        return t


def pair_mask_from_persons(mask: torch.Tensor) -> torch.Tensor:
    """[B, N] person mask -> upper-triangular pair mask M [B, N, N] (i < j, both present)."""
    n = mask.shape[1]
    triu = torch.triu(torch.ones(n, n, device=mask.device, dtype=mask.dtype), diagonal=1)
    return mask.unsqueeze(2) * mask.unsqueeze(1) * triu


class GRITv2(nn.Module):
    def __init__(self, cfg: GritConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GritConfig()
        g = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)
        try:
            self._build(cfg)
        finally:
            torch.random.set_rng_state(g)

    def _build(self, cfg: GritConfig):
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = make_backbone(cfg.backbone, cfg.img_size)
        with torch.no_grad():
            self.backbone.eval()
            f = self.backbone.forward_features(torch.zeros(1, 3, cfg.img_size, cfg.img_size))
        c, h, w = f.shape[1:]
        self.feat_c, self.feat_h, self.feat_w = int(c), int(h), int(w)
        self.clear_caches()
        self.se = SEBlock(c, cfg.se_reduction)
        self.gqm = nn.ModuleList([GQMLayer(c, cfg.leaky_slope) for _ in range(cfg.gqm_layers)])
        d = cfg.d_model
        self.query_proj = nn.Linear(c, d)  # e_ij -> query (GRITv2)
        self.input_proj = nn.Conv2d(c, d, 1)
        # learned 2D position embedding (DETR "learned"): row and column halves
        self.row_embed = nn.Parameter(torch.rand(h, d // 2))
        self.col_embed = nn.Parameter(torch.rand(w, d - d // 2))
        n = cfg.num_persons
        self.query_pos = nn.Parameter(torch.randn(n * n, d) * 0.02)
        self.encoder = nn.ModuleList([EncoderLayer(d, cfg.nheads, cfg.ffn_dim, cfg.dropout)
                                      for _ in range(cfg.enc_layers)])
        self.enc_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList([DecoderLayer(d, cfg.nheads, cfg.ffn_dim, cfg.dropout)
                                      for _ in range(cfg.dec_layers)])
        self.dec_norm = nn.LayerNorm(d)
        self.head_fc1 = nn.Linear(d, cfg.head_hidden)
        self.head_fc2 = nn.Linear(cfg.head_hidden, cfg.num_classes)
        # Our own layers: xavier for matrices (as DETR), zero biases; each layer drawn separately.
        for name, p in self.named_parameters():
            if name.startswith("backbone.") or name in ("row_embed", "col_embed", "query_pos"):
                continue
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def clear_caches(self) -> None:
        """timm's TinyViT attention caches its gathered relative-position biases in eval mode and only
        drops the cache on .train(True): after load_state_dict an eval-mode model would keep using the old
        biases (while the ONNX tracer reads the live parameters). Drop the caches whenever weights change."""
        for m in self.modules():
            cache = getattr(m, "attention_bias_cache", None)
            if isinstance(cache, dict):
                cache.clear()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.clear_caches()
        return out

    def pos_embed(self) -> torch.Tensor:
        h, w = self.feat_h, self.feat_w
        pos = torch.cat([
            self.col_embed.unsqueeze(0).expand(h, w, -1),
            self.row_embed.unsqueeze(1).expand(h, w, -1),
        ], dim=-1)
        return pos.reshape(1, h * w, -1)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor,
                return_aux: bool = False):
        b = image.shape[0]
        n = self.cfg.num_persons
        x = (image - self.mean) / self.std
        fmap = self.backbone.forward_features(x)  # [B, C, H, W]
        fmap = self.se(fmap)
        c = self.feat_c
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, HW, C]

        # person features from box-overlap pooling
        wts = box_cell_weights(boxes, self.feat_h, self.feat_w)  # [B, N, HW]
        nodes = torch.matmul(wts, tokens)  # [B, N, C]
        gap = tokens.mean(dim=1).reshape(b, 1, 1, c)  # edges start as the global average pool

        # GQM with the bilateral mask
        pm = pair_mask_from_persons(mask)  # [B, N, N]
        a = pm + pm.transpose(1, 2)
        e = gap
        for layer in self.gqm:
            nodes, e = layer(nodes, e, a)
        queries = self.query_proj(e.reshape(b, n * n, c))  # [B, N*N, D]

        # TRM
        mem = self.input_proj(fmap).flatten(2).transpose(1, 2)  # [B, HW, D]
        mpos = self.pos_embed()
        for layer in self.encoder:
            mem = layer(mem, mpos)
        mem = self.enc_norm(mem)
        valid = a.reshape(b, 1, 1, n * n)  # pair (i, j), i != j, both persons present
        key_bias = (1.0 - valid) * MASK_NEG
        qpos = self.query_pos.unsqueeze(0)
        t = queries
        for layer in self.decoder:
            t = layer(t, mem, qpos, mpos, key_bias)
        t = self.dec_norm(t)

        logits = self.head_fc2(F.leaky_relu(self.head_fc1(t), self.cfg.leaky_slope))
        logits = logits.reshape(b, n, n, self.cfg.num_classes)
        logits = (logits + logits.transpose(1, 2)) * 0.5
        if return_aux:
            return logits, {"pair_mask": a}
        return logits


def build_model(cfg: GritConfig | str = "gritv2-s") -> GRITv2:
    if isinstance(cfg, str):
        cfg = CONFIGS[cfg]
    return GRITv2(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_checkpoint(path: str, map_location="cpu") -> GRITv2:
    ck = torch.load(path, map_location=map_location, weights_only=False)
    model = GRITv2(GritConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    return model


def save_checkpoint(model: GRITv2, path: str, **extra) -> None:
    torch.save({"config": model.cfg.to_dict(), "model": model.state_dict(), **extra}, path)
