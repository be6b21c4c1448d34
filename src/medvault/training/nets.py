"""Compact CNNs trained from scratch on 2 CPU cores.

``CompactNet``: a small pre-activation-free ResNet (conv-BN-ReLU blocks, 4 stages), global average
pooling, a linear classifier (so class-activation maps are exact: CAM = W_c . features) and a
small projection head for retrieval embeddings (trained with a supervised contrastive loss).
The exported graph takes float32 N x 1 x S x S in [0, 1] and normalises internally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MEAN = 0.25
STD = 0.25


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short: nn.Module
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
        else:
            self.short = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))


class CompactNet(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (24, 48, 96, 192),
                 embed_dim: int = 128, dropout: float = 0.2, last_stride: int = 2) -> None:
        """``last_stride`` 1 keeps the last stage at the third stage's resolution: the feature
        map, and so the CAM, is 16 x 16 at 128 px instead of 8 x 8 (same weights' shapes)."""
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else (last_stride if i == len(widths) - 1 else 2)
            stages.append(Block(cin, w, stride))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self.embed_dim = embed_dim
        self.proj = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(inplace=True),
                                  nn.Linear(cin, embed_dim))
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MEAN) / STD
        out: torch.Tensor = self.stages(self.stem(x))
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap = self.features(x)
        pooled = fmap.mean(dim=(2, 3))
        logits = self.fc(self.dropout(pooled))
        emb = F.normalize(self.proj(pooled), dim=1)
        return logits, emb, fmap


class ExportWrapper(nn.Module):
    """What goes into ONNX: calibrated probabilities, logits, L2-normalised embedding, CAM."""

    def __init__(self, net: CompactNet, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("inv_t", torch.tensor(1.0 / temperature, dtype=torch.float32))

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        fmap = self.net.features(x)
        pooled = fmap.mean(dim=(2, 3))
        logits = self.net.fc(pooled)
        probs = torch.softmax(logits * self.inv_t, dim=1)
        emb = F.normalize(self.net.proj(pooled), dim=1)
        # class activation maps: N x C x h x w = W (C x K) . fmap (N x K x h x w)
        cam = torch.einsum("ck,nkhw->nchw", self.net.fc.weight, fmap)
        return probs, logits, emb, cam


def supcon_loss(emb: torch.Tensor, y: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), single view per sample."""
    sim = emb @ emb.t() / tau
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = (y[:, None] == y[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    npos = pos.sum(1)
    valid = npos > 0
    if not bool(valid.any()):
        return emb.sum() * 0.0
    loss = -(log_prob * pos).sum(1)[valid] / npos[valid]
    return loss.mean()
