"""Small PNG previews of archived instances for the results grid."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from django.core.cache import cache

from medvault.archive.models import Instance

THUMBNAIL_SIZE = 256


def _first(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _meta(instance: Instance, tag: str) -> Any:
    item = (instance.metadata or {}).get(tag) or {}
    values = item.get("Value") if isinstance(item, dict) else None
    return values[0] if values else None


def to_uint8(pixels: np.ndarray, instance: Instance | None = None) -> np.ndarray:
    """Window stored pixel values for display: the DICOM window when given, else 1-99 %."""
    arr = np.asarray(pixels)
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[-1] == 3):
        return arr
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        lo, hi = float(arr.min()), float(arr.max())
    else:
        slope = _first(_meta(instance, "00281053")) if instance else None
        intercept = _first(_meta(instance, "00281052")) if instance else None
        arr = arr * (slope if slope else 1.0) + (intercept or 0.0)
        centre = _first(_meta(instance, "00281050")) if instance else None
        width = _first(_meta(instance, "00281051")) if instance else None
        if centre is not None and width and width > 1:
            lo, hi = centre - width / 2, centre + width / 2
        else:
            lo, hi = (float(v) for v in np.percentile(arr, [1, 99]))
    if hi <= lo:
        hi = lo + 1
    out = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    if instance is not None and str(_meta(instance, "00280004") or "") == "MONOCHROME1":
        out = 255 - out
    return out


def png_bytes(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    from PIL import Image

    img = Image.fromarray(image)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def instance_thumbnail(instance: Instance) -> bytes:
    """A PNG of the first frame, at most 256 px wide or high (cached by blob key)."""
    key = f"retrieval-thumb:{instance.blob_key}:{THUMBNAIL_SIZE}"
    cached = cache.get(key)
    if cached is not None:
        return bytes(cached)
    from medvault.archive.selectors import instance_pixels

    pixels = np.asarray(instance_pixels(instance=instance, frame=0))
    if pixels.ndim == 3 and pixels.shape[-1] not in (3,):
        pixels = pixels[0]
    data = png_bytes(to_uint8(pixels, instance))
    cache.set(key, data, 3600)
    return data
