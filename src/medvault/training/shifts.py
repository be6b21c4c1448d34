"""Acquisition shifts for the internal validation split (``medvault evaluate --shifted``).

The external sets may never choose anything (docs/models.md), so a recipe meant to hold up on
other hospitals' images needs an internal stand-in for "another hospital". This module renders
each internal validation image the way another site might have exported it, one shift per image,
deterministically from the image's position in the set (every kind gets an equal share):

* ``soft_tissue_window``: a soft-tissue / mediastinal window seen through the 8-bit export
  (grey levels 0.55-0.85 of the range stretched to full range, the rest clipped). For a lung
  window rendering (-1350..150 HU) a W400 L40 window starts at about 0.79.
* ``gamma_dark`` / ``gamma_bright``: gamma 1.6 and 0.6 (another display curve).
* ``bias_field``: a smooth multiplicative field of +-25 % (MR coil inhomogeneity).
* ``blur``: Gaussian, sigma 1.2 px at the stored size (thicker slices, smoother kernel).
* ``downsampled``: down to 40 % and back up (a lower-resolution acquisition or export).
* ``noise``: Gaussian, sigma 10 grey levels (low dose, lower field strength).
* ``jpeg_q20``: JPEG at quality 20 (a lossy export from another viewer).

The shifts are of the same family as ``augment_robust``, so a recipe trained with it is scored
on the kind of change it was trained for: the shifted figures say how a model copes with those
changes, not how it does at a given hospital. Only the external sets say that.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from medvault.core.ml.preprocess import to_gray

KINDS = ("soft_tissue_window", "gamma_dark", "gamma_bright", "bias_field", "blur",
         "downsampled", "noise", "jpeg_q20")
SEED = 20261205


def shift(img: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """One acquisition shift of a uint8 image; the same (img, kind, seed) gives the same output."""
    if kind not in KINDS:
        raise ValueError(f"unknown shift {kind!r}; one of {', '.join(KINDS)}")
    g = to_gray(img).astype(np.float32) / 255.0  # as serving does
    rng = np.random.default_rng([SEED, seed])
    if kind == "soft_tissue_window":
        lo, hi = 0.55, 0.85
        g = np.clip((g - lo) / (hi - lo), 0, 1)
    elif kind == "gamma_dark":
        g = g**1.6
    elif kind == "gamma_bright":
        g = g**0.6
    elif kind == "bias_field":
        coarse = rng.normal(0.0, 0.25, (4, 4)).astype(np.float32)
        field = np.asarray(Image.fromarray(coarse, mode="F").resize(g.shape[::-1], Image.Resampling.BICUBIC))
        g = np.clip(g * np.exp(np.clip(field, -0.25, 0.25)), 0, 1)
    elif kind == "blur":
        im = Image.fromarray((g * 255).round().astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
        g = np.asarray(im, dtype=np.float32) / 255.0
    elif kind == "downsampled":
        im = Image.fromarray((g * 255).round().astype(np.uint8))
        small = im.resize((max(8, int(im.width * 0.4)), max(8, int(im.height * 0.4))), Image.Resampling.BILINEAR)
        g = np.asarray(small.resize(im.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    elif kind == "noise":
        g = np.clip(g + rng.normal(0.0, 10 / 255, g.shape).astype(np.float32), 0, 1)
    elif kind == "jpeg_q20":
        buf = io.BytesIO()
        Image.fromarray((g * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=20)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            g = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.asarray((g * 255).round().clip(0, 255), dtype=np.uint8)


def kind_for(index: int) -> str:
    """The shift given to the index-th image of a set (round robin: equal shares)."""
    return KINDS[index % len(KINDS)]
