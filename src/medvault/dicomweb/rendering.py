"""Rendering one frame to PNG or JPEG for WADO-RS ``/rendered`` and ``/thumbnail`` and WADO-URI.

No Django here: callers pass the raw stored pixel values and the instance's DICOM JSON.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


class RenderError(ValueError):
    """A rendering parameter that cannot be honoured."""


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"


def _first_number(meta: dict[str, Any], tag: str) -> float | None:
    element = meta.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value") or []
    try:
        return float(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _first_string(meta: dict[str, Any], tag: str) -> str:
    element = meta.get(tag)
    if not isinstance(element, dict):
        return ""
    values = element.get("Value") or []
    return str(values[0]) if values else ""


def window_parse(text: str) -> Window:
    """``center,width[,function]`` as PS3.18 8.3.5.1.4 writes the ``window`` parameter."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderError("window must be 'center,width[,function]'")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise RenderError("window center and width must be numbers") from None
    if width <= 0:
        raise RenderError("window width must be positive")
    function = parts[2].upper() if len(parts) == 3 else "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise RenderError(f"unsupported window function {parts[2]!r}")
    return Window(center, width, function)


def viewport_parse(text: str) -> tuple[int, int]:
    """``vw,vh`` (a source region ``,sx,sy,sw,sh`` is accepted but not applied)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise RenderError("viewport must be 'vw,vh'")
    try:
        vw, vh = int(parts[0] or 0), int(parts[1] or 0)
    except ValueError:
        raise RenderError("viewport width and height must be integers") from None
    if not (0 <= vw <= 8192 and 0 <= vh <= 8192) or (vw == 0 and vh == 0):
        raise RenderError("viewport width and height must be between 1 and 8192")
    return vw, vh


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif window.function == "LINEAR_EXACT":
        out = (values - (c - w / 2)) / w * 255.0
    else:
        out = ((values - (c - 0.5)) / max(w - 1, 1) + 0.5) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def frame_render(
    pixels: np.ndarray,
    meta: dict[str, Any],
    *,
    window: Window | None = None,
    viewport: tuple[int, int] | None = None,
    media_type: str = "image/jpeg",
    quality: int = 90,
) -> bytes:
    """Window, scale and encode one frame of raw stored values."""
    photometric = _first_string(meta, "00280004").upper()
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]).astype(np.uint8), "RGB")
    else:
        values = pixels.astype(np.float64)
        slope = _first_number(meta, "00281053")
        intercept = _first_number(meta, "00281052")
        if slope is not None or intercept is not None:
            values = values * (slope if slope is not None else 1.0) + (intercept or 0.0)
        if window is None:
            center = _first_number(meta, "00281050")
            width = _first_number(meta, "00281051")
            if center is not None and width is not None and width > 0:
                window = Window(center, width)
            else:
                lo, hi = float(values.min()), float(values.max())
                window = Window((lo + hi) / 2, max(hi - lo, 1.0), "LINEAR_EXACT")
        grey = _apply_window(values, window)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
        image = Image.fromarray(grey, "L")
    if viewport is not None:
        vw, vh = viewport
        w, h = image.size
        scale = min(vw / w if vw else float("inf"), vh / h if vh else float("inf"))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if media_type == "image/png":
        image.save(buffer, format="PNG", compress_level=1)
    elif media_type == "image/jpeg":
        image.save(buffer, format="JPEG", quality=max(1, min(quality, 100)))
    else:
        raise RenderError(f"cannot render to {media_type}")
    return buffer.getvalue()
