"""Does the lung model's heat-map point at the lungs? (``medvault evaluate --cam-check``)

A threshold lung mask is enough (the issue says so): on a chest CT slice, the body is what is
brighter than an Otsu threshold (holes filled, largest component); the lung fields are the dark
parts inside the body (components under 0.5 % of the image dropped), with holes filled so that
a nodule or mass surrounded by lung counts as lung, then dilated by 2 % of the image side to
include tumours on the pleura. The CAM peak is the arg-max of the heat-map at image size.
Needs scipy (installed with the [train] extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvault.core.ml import preprocess as pp


def otsu(gray: np.ndarray) -> float:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    return float(np.nanargmax(between))


def lung_mask(gray: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    t = otsu(gray)
    bright = gray > t
    lab, n = ndi.label(bright)
    if n == 0:
        return np.zeros_like(bright)
    sizes = ndi.sum(bright, lab, range(1, n + 1))
    body = ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    dark = body & ~bright
    lab, n = ndi.label(dark)
    if n:
        sizes = ndi.sum(dark, lab, range(1, n + 1))
        keep = np.flatnonzero(sizes >= 0.005 * gray.size) + 1
        dark = np.isin(lab, keep)
    lungs = ndi.binary_fill_holes(dark)
    r = max(1, int(round(0.02 * max(gray.shape))))
    mask: np.ndarray = ndi.binary_dilation(lungs, iterations=r)
    return mask


def peak_in_lungs(gray: np.ndarray, heatmap: np.ndarray) -> bool | None:
    """None when no lung field was found (mask empty)."""
    mask = lung_mask(gray)
    if not mask.any():
        return None
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != gray.shape:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat).resize(gray.shape[::-1], Image.Resampling.BILINEAR))
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(mask[y, x])


class CamCheck:
    """Collects, per set, whether the CAM peak of each answered cancer slice is in the lungs."""

    def __init__(self) -> None:
        self.truth: dict[Path, str] = {}
        self.hits: dict[str, list[bool | None]] = {}
        self.examples: dict[str, list[str]] = {}
        self.current = ""

    def start(self, set_name: str, items: list[Any]) -> None:
        self.current = set_name
        self.truth = {it.path: it.truth for it in items}
        self.hits[set_name] = []
        self.examples[set_name] = []

    def add(self, path: Path, image: Any, heatmap: np.ndarray | None) -> None:
        truth = self.truth.get(path, "")
        if heatmap is None or truth in ("normal", "benign", "") or not isinstance(image, np.ndarray):
            return
        hit = peak_in_lungs(pp.to_gray(image), heatmap)
        self.hits[self.current].append(hit)
        if hit is False and len(self.examples[self.current]) < 5:
            self.examples[self.current].append(f"{truth}/{path.name}")

    def summary(self, set_name: str) -> dict[str, Any]:
        h = self.hits.get(set_name, [])
        judged = [x for x in h if x is not None]
        return {"cancer_slices": len(h), "no_lung_mask": len(h) - len(judged),
                "peak_in_lung": int(sum(judged)),
                "share": round(sum(judged) / len(judged), 4) if judged else None,
                "outside_examples": self.examples.get(set_name, [])}
