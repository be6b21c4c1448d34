"""Threshold lung masks on 8-bit lung-window chest CT slices (numpy + scipy + scikit-image).

Two masks, one construction:

* :func:`lung_mask` (the lung fields): the body is what is brighter than an Otsu threshold
  (largest component, holes filled); the lung fields are the dark parts inside it (components
  under 0.5 % of the image dropped), holes filled so that a nodule or mass surrounded by lung
  counts as lung, dilated by 2 % of the image side to include tumours on the pleura. The
  CAM check (``medvault evaluate --cam-check``) asks whether a heat-map's peak falls in it.
* :func:`lung_field_hull`: the same with the convex hull of each lung taken before the
  dilation, so that a mass that indents a lung from the mediastinum or the chest wall is kept.
  A model card whose ``input.mask`` is ``"lung_fields"`` sees only this region
  (:func:`keep_lung_fields`): everything else is set to black, in training and in serving.
"""

from __future__ import annotations

import numpy as np


def otsu(gray: np.ndarray) -> float:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    if np.isnan(between).all():  # a single grey level: nothing is brighter than it
        return float(gray.max())
    return float(np.nanargmax(between))


def _mask(gray: np.ndarray, hull: bool) -> np.ndarray:
    from scipy import ndimage as ndi

    bright = gray > otsu(gray)
    lab, n = ndi.label(bright)
    if n == 0:
        return np.zeros(gray.shape, dtype=bool)
    sizes = ndi.sum(bright, lab, range(1, n + 1))
    body = ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    dark = body & ~bright
    lab, n = ndi.label(dark)
    if n:
        sizes = ndi.sum(dark, lab, range(1, n + 1))
        keep = np.flatnonzero(sizes >= 0.005 * gray.size) + 1
        dark = np.isin(lab, keep)
    lungs = ndi.binary_fill_holes(dark)
    if hull and lungs.any():
        from skimage.morphology import convex_hull_object

        lungs = convex_hull_object(lungs)  # type: ignore[no-untyped-call]
    r = max(1, int(round(0.02 * max(gray.shape))))
    mask: np.ndarray = ndi.binary_dilation(lungs, iterations=r)
    return mask


def lung_mask(gray: np.ndarray) -> np.ndarray:
    """uint8 H x W -> bool H x W lung fields (empty when none was found)."""
    return _mask(np.asarray(gray), hull=False)


def lung_field_hull(gray: np.ndarray) -> np.ndarray:
    """uint8 H x W -> bool H x W, each lung's convex hull, dilated (empty when none was found)."""
    return _mask(np.asarray(gray), hull=True)


def keep_lung_fields(square: np.ndarray) -> np.ndarray:
    """uint8 S x S model input -> the same with everything outside :func:`lung_field_hull` black.

    Where no lung field is found the slice is returned unchanged (the model then sees what it
    saw in training for such slices: they are masked, or not, by this same rule).
    """
    mask = lung_field_hull(square)
    if not mask.any():
        return square
    return np.where(mask, square, 0).astype(np.uint8)
