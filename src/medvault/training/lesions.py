"""Synthetic non-enhancing lesions painted into "no tumour" brain slices (docs/models.md, round 7).

The brain-mri training set has almost no tumour that is axial and does not enhance: its tumour
classes are post-contrast T1 slices, many coronal or sagittal, while "no tumour" mixes
sequences and is mostly axial (round 6). A low-grade glioma on an axial FLAIR slice, a diffuse
bright region without enhancement, therefore looks to the model like "no tumour". No real
slice of that kind may be trained on (``external/`` is for reporting only), so this module
makes some: it paints an irregular, soft-edged region inside the brain of a "no tumour" slice,
brighter than most of the brain (FLAIR / T2-like) or darker (T1-like), pushes the tissue
around it outwards (mass effect), and the slice is then trained as "glioma".

The same function makes the internal check ``medvault evaluate --synthetic-lesions`` (the
validation split's "no tumour" slices, each with a lesion from a seed the training never drew),
which shows that a model has learnt what was painted, not that it finds real tumours: only the
external sets, scored after the decision, say that.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medvault.training.cam_check import heatmap_peak

# the evaluation's lesions come from torch.Generator().manual_seed(EVAL_SEED + i); training
# draws from its epoch generators (seed * 1000 + epoch), far from this
EVAL_SEED = 7_000_000
# the heat-map check's slack (peak_in_lesion): half a cell of a 6 x 6 map (brain-mri before
# v1.3.0), one cell of today's 12 x 12; fixed, so that figures stay comparable
CAM_SLACK = 1 / 12
# scalp and skull: the head mask eroded by this share of the slice's shorter side is the brain
SKULL = 0.07


def _rand(gen: torch.Generator, lo: float, hi: float) -> float:
    return float(torch.rand(1, generator=gen)) * (hi - lo) + lo


def _head(g: torch.Tensor) -> np.ndarray:
    """The head: the largest region brighter than 0.08 and than 40 % of the Otsu threshold (a
    grey frame around the slice is not head) after a light blur, holes filled (bool H x W numpy;
    empty for a black slice)."""
    from scipy import ndimage as ndi

    from medvault.core.ml.lung_fields import otsu

    soft = F.avg_pool2d(g[None, None], 5, stride=1, padding=2)[0, 0].numpy()
    thr = max(0.08, 0.4 * otsu((soft * 255).round().astype(np.uint8)) / 255)
    lab, n = ndi.label(soft > thr)
    if n == 0:
        return np.zeros(soft.shape, dtype=bool)
    sizes = ndi.sum(np.ones_like(soft), lab, range(1, n + 1))
    head: np.ndarray = ndi.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
    return head


def _skull(side: int) -> int:
    """Scalp and skull in pixels: ``SKULL`` of the side, plus the blur's reach in ``_head``."""
    return max(1, int(round(SKULL * side))) + 2


def _eroded(mask: np.ndarray, by: int) -> np.ndarray:
    """``mask`` less every pixel within ``by`` pixels (Euclidean) of its outside."""
    from scipy import ndimage as ndi

    out: np.ndarray = ndi.distance_transform_edt(mask) > by
    return out


def paint_lesion(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One synthetic lesion in a grey slice ``g`` (H x W float in [0, 1]); see :func:`_paint`."""
    return _paint(g, gen)[0]


def _paint(g: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic lesion in a grey slice ``g`` (H x W float in [0, 1]); returns a new tensor.

    Centred inside the brain (the head mask less ``SKULL`` and most of the radius) and never
    painted outside it; returns the new slice and the blend weight (H x W in [0, 1]: where the
    lesion is). Radius 6-16 % of the slice's shorter side, an ellipse (aspect up to 1.6, any angle) whose
    border is bent by smooth noise, an edge 10-30 % of the radius wide (diffuse), mass effect
    pushing the tissue outwards by up to 35 % of the radius, then the region blended (70-100 %)
    towards a level well above the brain's 90th percentile (70 % of lesions) or below 35 % of its
    median (30 %), with a little texture.
    """
    h, w = g.shape
    side = min(h, w)
    r = _rand(gen, 0.06, 0.16) * side
    head = _head(g)
    skull = _skull(side)
    brain = _eroded(head, skull)  # scalp and skull left out
    centres = np.argwhere(_eroded(head, skull + int(r * 0.7)))
    if not len(centres):
        centres = np.argwhere(brain) if brain.any() else np.array([[h // 2, w // 2]])
    cy, cx = (int(v) for v in centres[int(torch.randint(len(centres), (1,), generator=gen))])
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    dy, dx = yy - cy, xx - cx
    angle = _rand(gen, 0.0, math.pi)
    aspect = _rand(gen, 1.0, 1.6)
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / aspect
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    dist = torch.sqrt(u * u + v * v) / r
    coarse = torch.randn(1, 1, 5, 5, generator=gen)
    bend = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    edge = _rand(gen, 0.10, 0.30)
    shape = torch.sigmoid((1.0 - dist + 0.25 * bend) / edge)
    # mass effect: sample from nearer the centre, so the tissue around the lesion moves out
    push = _rand(gen, 0.0, 0.35) * torch.exp(-(dist**2) / 2.0)
    sy = (yy - dy * push) / max(h - 1, 1) * 2 - 1
    sx = (xx - dx * push) / max(w - 1, 1) * 2 - 1
    moved = F.grid_sample(g[None, None], torch.stack([sx, sy], -1)[None], mode="bilinear",
                          padding_mode="border", align_corners=True)[0, 0]
    tissue = g[torch.from_numpy(brain)] if brain.any() else g.flatten()
    if bool(torch.rand(1, generator=gen) < 0.7):
        level = min(1.0, float(torch.quantile(tissue, 0.9)) * _rand(gen, 1.1, 1.5) + 0.1)
    else:
        level = float(tissue.median()) * _rand(gen, 0.1, 0.35)
    fine = F.interpolate(torch.randn(1, 1, max(2, h // 8), max(2, w // 8), generator=gen),
                         size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    target = (level * (1.0 + 0.08 * fine)).clamp(0, 1)
    keep = torch.from_numpy(brain.astype(np.float32))
    keep = F.avg_pool2d(keep[None, None], 3, stride=1, padding=1)[0, 0]  # a soft border
    alpha = _rand(gen, 0.7, 1.0) * shape * keep
    moved = keep * moved + (1 - keep) * g  # the skull and what lies outside it do not move
    return (moved * (1 - alpha) + target * alpha).clamp(0, 1), alpha


def paint_batch(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p: float, normal: int,
                lesion: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Give a share ``p`` of the batch's ``normal``-class slices a lesion and the ``lesion``
    label. x: N x 1 x S x S in [0, 1], y: N. Draws nothing from ``gen`` when ``p`` is 0."""
    if p <= 0:
        return x, y
    pick = (torch.rand(x.shape[0], generator=gen) < p) & (y == normal)
    if not bool(pick.any()):
        return x, y
    x, y = x.clone(), y.clone()
    for i in torch.nonzero(pick).flatten().tolist():
        x[i, 0] = paint_lesion(x[i, 0], gen)
        y[i] = lesion
    return x, y


def _unit(img: np.ndarray) -> torch.Tensor:
    """A uint8 grey image as an H x W float tensor in [0, 1], as the painting takes it."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0)


def painted(img: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation's lesion number ``index`` in a uint8 grey image (``--synthetic-lesions``):
    the painted image and the lesion's mask (bool, where at least half of the lesion shows)."""
    out, alpha = _paint(_unit(img), torch.Generator().manual_seed(EVAL_SEED + index))
    return (out.numpy() * 255.0).round().astype(np.uint8), alpha.numpy() >= 0.5 * float(alpha.max())


def brain_mask(img: np.ndarray) -> np.ndarray:
    """Where a lesion may be painted in a uint8 grey image: the head less scalp and skull."""
    return _eroded(_head(_unit(img)), _skull(min(img.shape)))


def _near(lesion: np.ndarray) -> np.ndarray:
    """The lesion mask dilated by ``CAM_SLACK`` of the slice's side."""
    from scipy import ndimage as ndi

    near: np.ndarray = ndi.distance_transform_edt(~lesion) <= CAM_SLACK * min(lesion.shape)
    return near


def peak_in_lesion(heatmap: np.ndarray, lesion: np.ndarray) -> bool:
    """Whether the heat-map's arg-max lies in the lesion mask dilated by ``CAM_SLACK`` of the
    slice's side (a 6 x 6 map's cell covers a sixth of the slice, so the peak of the upsampled
    map can sit half a cell from the lesion it comes from; the slack stays the same for finer
    maps, so that the figures of different weights compare)."""
    return bool(_near(lesion)[heatmap_peak(heatmap, lesion.shape)])


class LesionCamCheck:
    """Per painted slice the model answered with a tumour label: does the heat-map's peak lie
    on the lesion (``peak_in_lesion``)? With the chance of that for a peak placed at random in
    the brain (the slack-dilated lesion's share of the brain), so the share means something,
    and the mean offset of the peak from the lesion's centre (x right, y down, in shares of the
    slice's width and height), which shows a displacement that is the same on every slice."""

    def __init__(self) -> None:
        self.hits: list[bool] = []
        self.chance: list[float] = []
        self.offsets: list[tuple[float, float]] = []
        self.examples: list[str] = []

    def add(self, name: str, gray: np.ndarray, lesion: np.ndarray, heatmap: np.ndarray) -> None:
        near = _near(lesion)
        py, px = heatmap_peak(heatmap, lesion.shape)
        hit = bool(near[py, px])  # peak_in_lesion, with the dilation and peak kept for below
        self.hits.append(hit)
        ly, lx = np.argwhere(lesion).mean(axis=0)  # where the peak lies from the lesion's centre
        self.offsets.append(((px - lx) / lesion.shape[1], (py - ly) / lesion.shape[0]))
        brain = brain_mask(gray)
        self.chance.append(float((near & brain).sum() / max(1, brain.sum())))
        if not hit and len(self.examples) < 5:
            self.examples.append(name)

    def summary(self) -> dict[str, object]:
        n = len(self.hits)
        return {"tumour_answers": n, "peak_in_lesion": int(sum(self.hits)),
                "share": round(sum(self.hits) / n, 4) if n else None,
                "chance": round(float(np.mean(self.chance)), 4) if n else None,
                "mean_peak_offset_xy": ([round(float(v), 4) for v in np.mean(self.offsets, axis=0)]
                                        if self.offsets else None),
                "outside_examples": self.examples}
