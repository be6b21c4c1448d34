"""Batched augmentation in torch (CPU friendly): geometry via one affine_grid/grid_sample call
that also produces the training resolution, then intensity jitter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, size: int, gen: torch.Generator, strong: bool = True,
            hflip: bool = True) -> torch.Tensor:
    """x: N x 1 x S x S float in [0, 1] -> N x 1 x size x size augmented."""
    out = _geometry(x, size, gen, strong, hflip)
    if strong:
        out = _intensity(out, gen)
    return out.clamp(0, 1)


def augment_with_masks(x: torch.Tensor, masks: torch.Tensor, size: int, gen: torch.Generator,
                       hflip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``augment`` (strong), with N x 1 x S x S masks moved by the same geometry (bilinear,
    so a mask cell holds the share of it that lies inside) and left out of the intensity jitter.
    Draws the same random numbers as ``augment``."""
    both = _geometry(torch.cat([x, masks], dim=1), size, gen, True, hflip)
    return _intensity(both[:, :1], gen).clamp(0, 1), both[:, 1:].clamp(0, 1)


def _uniform(n: int, gen: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def _geometry(x: torch.Tensor, size: int, gen: torch.Generator, strong: bool,
              hflip: bool) -> torch.Tensor:
    """Rotation +-15 deg, scale 0.85-1.15, shift +-8 %, flip, resampled to size x size."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return _uniform(n, gen, lo, hi)

    rot = u(-15, 15) * math.pi / 180 if strong else torch.zeros(n)
    scale = u(0.85, 1.15) if strong else torch.ones(n)
    tx, ty = (u(-0.08, 0.08), u(-0.08, 0.08)) if strong else (torch.zeros(n), torch.zeros(n))
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], 1),
        torch.stack([sin * flip, cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _intensity(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Contrast 0.75-1.25, brightness +-0.1, gamma exp(+-0.3), Gaussian noise sd 0-0.03."""
    n = out.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return _uniform(n, gen, lo, hi)

    contrast = u(0.75, 1.25)[:, None, None, None]
    bright = u(-0.1, 0.1)[:, None, None, None]
    gamma = torch.exp(u(-0.3, 0.3))[:, None, None, None]
    out = out.clamp(0, 1) ** gamma
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    noise = torch.randn(out.shape, generator=gen) * u(0.0, 0.03)[:, None, None, None]
    return out + noise


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    arr = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(out)[None]


def augment_robust(x: torch.Tensor, size: int, gen: torch.Generator,
                   hflip: bool = True) -> torch.Tensor:
    """Stronger augmentation for other hospitals' images (issue "models that hold up").

    Geometry: rotation +-15 deg, scale 0.75-1.3 (random resized crop), shift +-10 %, flip.
    Intensity, each with its own probability: window jitter (p 0.5; a random sub-window
    [lo, hi] of the 8-bit range stretched to full range, lo in 0-0.85: for CT this imitates the
    mediastinal / soft-tissue and other standard windows, for MR other contrast settings), gamma,
    contrast, brightness, a smooth multiplicative bias field
    (MR), Gaussian blur, down-and-up resampling, Gaussian noise and JPEG artefacts.
    """
    n = x.shape[0]

    def u(lo: float, hi: float, m: int = n) -> torch.Tensor:
        return torch.rand(m, generator=gen) * (hi - lo) + lo

    def coin(p: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) < p

    rot = u(-15, 15) * math.pi / 180
    scale = u(0.75, 1.3)
    tx, ty = u(-0.1, 0.1), u(-0.1, 0.1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # window jitter: lo up to 0.85 covers the standard clinical CT windows seen through a lung
    # window rendering (-1350..150 HU): mediastinal / soft tissue W350-400 L40-50 starts at
    # about 0.8 of the range; bone-like windows stretch above 1 (saturated highs)
    lo = u(0.0, 0.85)
    hi = (lo + u(0.2, 0.9)).clamp(max=1.5)
    win = coin(0.5)
    lo = torch.where(win, lo, torch.zeros(n))[:, None, None, None]
    hi = torch.where(win, hi, torch.ones(n))[:, None, None, None]
    out = ((out - lo) / (hi - lo)).clamp(0, 1)
    # gamma, contrast, brightness
    gamma = torch.exp(u(-0.5, 0.5))[:, None, None, None]
    out = out ** gamma
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * u(0.65, 1.35)[:, None, None, None] + mean + u(-0.12, 0.12)[:, None, None, None]
    # bias field: a smooth random 4x4 field, multiplicative
    field = torch.randn(n, 1, 4, 4, generator=gen) * u(0.0, 0.25)[:, None, None, None]
    field = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)
    out = torch.where(coin(0.4)[:, None, None, None], out * torch.exp(field), out)
    # blur
    sigma = float(u(0.5, 1.5, 1))
    out = torch.where(coin(0.25)[:, None, None, None], _gaussian_blur(out, sigma), out)
    # resampling (down and up)
    small = max(8, int(size * float(u(0.4, 0.8, 1))))
    resampled = F.interpolate(F.interpolate(out, size=(small, small), mode="bilinear",
                                            antialias=True, align_corners=False),
                              size=(size, size), mode="bilinear", align_corners=False)
    out = torch.where(coin(0.25)[:, None, None, None], resampled, out)
    out = out + torch.randn(out.shape, generator=gen) * u(0.0, 0.05)[:, None, None, None]
    out = out.clamp(0, 1)
    jpeg = coin(0.3)
    q = (u(15, 70)).round().int()
    for i in torch.nonzero(jpeg).flatten().tolist():
        out[i] = _jpeg(out[i], int(q[i]))
    return out.clamp(0, 1)


def remap_contrast(x: torch.Tensor, gen: torch.Generator, p: float, knots: int = 6) -> torch.Tensor:
    """Give a share ``p`` of the images a random, non-monotonic grey-level curve (MR).

    The curve is piecewise linear through ``knots`` + 1 points evenly spaced on [0, 1]: the first
    is 0 (black background stays black), the others drawn uniformly from [0, 1], so grey levels
    may swap order (CSF, grey and white matter, oedema, enhancement). The anatomy and the shape
    of a lesion stay; the contrast a sequence gives them does not, so a model trained with it
    cannot tell its classes apart by sequence: in the brain set the tumour classes are nearly all
    post-contrast T1 and "no tumour" mixes T1, T2, FLAIR (docs/models.md, round 6).
    x: N x 1 x S x S in [0, 1]. Draws nothing from ``gen`` when ``p`` is 0.
    """
    if p <= 0:
        return x
    n = x.shape[0]
    pick = torch.rand(n, generator=gen) < p
    ys = torch.rand(n, knots + 1, generator=gen)
    ys[:, 0] = 0.0
    pos = x.clamp(0, 1).reshape(n, -1) * knots
    lo = pos.floor().clamp(max=knots - 1)
    i = lo.long()
    y0, y1 = torch.gather(ys, 1, i), torch.gather(ys, 1, i + 1)
    curved = (y0 + (y1 - y0) * (pos - lo)).reshape(x.shape)
    return torch.where(pick[:, None, None, None], curved, x)


def augment_mixed(x: torch.Tensor, size: int, gen: torch.Generator, robust_p: float,
                  hflip: bool = True) -> torch.Tensor:
    """Each image gets ``augment_robust`` with probability ``robust_p``, else ``augment``.

    robust_p = 1 is the all-robust recipe (too strong for the epochs we can afford on a CPU:
    docs/models.md); a share keeps the clean look of the training sources in most batches.
    """
    if robust_p <= 0:
        return augment(x, size, gen, strong=True, hflip=hflip)
    if robust_p >= 1:
        return augment_robust(x, size, gen, hflip=hflip)
    pick = torch.rand(x.shape[0], generator=gen) < robust_p
    out = torch.empty(x.shape[0], x.shape[1], size, size, dtype=x.dtype)
    if bool(pick.any()):
        out[pick] = augment_robust(x[pick], size, gen, hflip=hflip)
    if bool((~pick).any()):
        out[~pick] = augment(x[~pick], size, gen, strong=True, hflip=hflip)
    return out
