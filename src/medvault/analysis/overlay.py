"""Heat-map rendering: a transparent colour-map overlay PNG and a burned-in RGB image.

No Django here; numpy and Pillow only.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Below this heat the overlay is fully transparent, so the image stays readable.
_HEAT_FLOOR = 0.15
_MAX_ALPHA = 0.6


def _jet(heat: np.ndarray) -> np.ndarray:
    """Map heat in [0, 1] to RGB uint8: blue-cyan-yellow-red (jet, ending in bright red)."""
    h = np.clip(heat, 0.0, 1.0)
    r = np.clip(4.0 * h - 1.5, 0.0, 1.0)  # stays bright red at the top, unlike jet
    g = np.clip(1.5 - np.abs(4.0 * h - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * h - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def _normalise(heatmap: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"a heat-map is 2-D, not {heat.shape}")
    heat = np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0)
    heat = np.clip(heat, 0.0, 1.0)
    if size is not None and (heat.shape[1], heat.shape[0]) != size:
        image = Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR)
        heat = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return heat


def _alpha(heat: np.ndarray) -> np.ndarray:
    ramp = np.clip((heat - _HEAT_FLOOR) / (1.0 - _HEAT_FLOOR), 0.0, 1.0)
    return ramp * _MAX_ALPHA


# The overlay is a palette PNG: heat quantised to 256 levels, each with its colour and
# opacity (tRNS). Browsers show it like RGBA; it encodes ~5x faster and is ~3x smaller.
_LEVELS = np.linspace(0.0, 1.0, 256, dtype=np.float32)
_PALETTE = _jet(_LEVELS).reshape(-1).tolist()
_PALETTE_ALPHA = (_alpha(_LEVELS) * 255.0 + 0.5).astype(np.uint8).tobytes()


def overlay_png(heatmap: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """A transparent PNG of the heat-map: colour = heat, opacity grows with heat.

    Parameters
    ----------
    heatmap
        Heat in [0, 1], shape (rows, columns).
    size
        (width, height) of the image the overlay covers; the heat-map is resized to it.
    """
    heat = _normalise(heatmap, size)
    index = (heat * 255.0 + 0.5).astype(np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=_PALETTE_ALPHA, compress_level=6)
    return buffer.getvalue()


def composite(image_rgb: np.ndarray, overlay_rgba: np.ndarray) -> np.ndarray:
    """Alpha-blend an overlay (``png_rgba(overlay_png(...))``) onto an RGB uint8 image.

    The result is what the viewer shows with the overlay toggled on; it is what an export
    burns in. The overlay is resized to the image when their sizes differ.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError("composite needs an RGB uint8 image")
    rows, columns = image_rgb.shape[:2]
    overlay = np.asarray(overlay_rgba, dtype=np.uint8)
    if overlay.shape[:2] != (rows, columns):
        overlay = np.asarray(
            Image.fromarray(overlay, mode="RGBA").resize((columns, rows), Image.Resampling.BILINEAR)
        )
    alpha = overlay[..., 3:4].astype(np.float32) / 255.0
    blended = (
        image_rgb.astype(np.float32) * (1.0 - alpha) + overlay[..., :3].astype(np.float32) * alpha
    )
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def png_rgba(png: bytes) -> np.ndarray:
    """Decode a PNG into an RGBA uint8 array."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.uint8)


def display_rgb(pixels: np.ndarray, *, window: tuple[float, float] | None = None) -> np.ndarray:
    """An 8-bit RGB rendering of stored pixels (grey or RGB) for burning in an overlay.

    Parameters
    ----------
    pixels
        One frame: (rows, columns) grey values (modality LUT already applied when a window
        is given) or (rows, columns, 3) colour.
    window
        (centre, width) to apply to grey values; min-max scaling when None.
    """
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 3:
        if array.dtype == np.uint8:
            return array.copy()
        array = array.astype(np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return (scaled * 255.0 + 0.5).astype(np.uint8)
    if array.ndim != 2:
        raise ValueError(f"cannot render pixels of shape {array.shape}")
    grey = array.astype(np.float32)
    if window is not None and window[1] > 0:
        centre, width = window
        low, high = centre - width / 2.0, centre + width / 2.0
    else:
        low, high = float(grey.min()), float(grey.max())
    scaled = np.clip((grey - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(grey)
    grey8 = (scaled * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(grey8[..., None], 3, axis=2)
