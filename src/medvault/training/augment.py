"""Batched augmentation in torch (CPU friendly): geometry via one affine_grid/grid_sample call
that also produces the training resolution, then intensity jitter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, size: int, gen: torch.Generator, strong: bool = True,
            hflip: bool = True) -> torch.Tensor:
    """x: N x 1 x S x S float in [0, 1] -> N x 1 x size x size augmented."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    rot = u(-15, 15) * math.pi / 180 if strong else torch.zeros(n)
    scale = u(0.85, 1.15) if strong else torch.ones(n)
    tx, ty = (u(-0.08, 0.08), u(-0.08, 0.08)) if strong else (torch.zeros(n), torch.zeros(n))
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], 1),
        torch.stack([sin * flip, cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if strong:
        contrast = u(0.75, 1.25)[:, None, None, None]
        bright = u(-0.1, 0.1)[:, None, None, None]
        gamma = torch.exp(u(-0.3, 0.3))[:, None, None, None]
        out = out.clamp(0, 1) ** gamma
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * contrast + mean + bright
        noise = torch.randn(out.shape, generator=gen) * u(0.0, 0.03)[:, None, None, None]
        out = out + noise
    return out.clamp(0, 1)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
