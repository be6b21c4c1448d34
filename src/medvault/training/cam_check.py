"""Does the lung model's heat-map point at the lungs? (``medvault evaluate --cam-check``)

A threshold lung mask is enough (the issue says so): :func:`medvault.core.ml.lung_fields.lung_mask`
on the original slice. The CAM peak is the arg-max of the heat-map at image size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvault.core.ml import preprocess as pp
from medvault.core.ml.lung_fields import lung_mask


def heatmap_peak(heatmap: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int]:
    """(row, column) of the heat-map's arg-max at ``shape`` (upsampled bilinearly, as
    ``analyse()`` does, when its size differs)."""
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != shape:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(y), int(x)


def peak_in_lungs(gray: np.ndarray, heatmap: np.ndarray) -> bool | None:
    """None when no lung field was found (mask empty)."""
    mask = lung_mask(gray)
    if not mask.any():
        return None
    return bool(mask[heatmap_peak(heatmap, gray.shape)])


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
