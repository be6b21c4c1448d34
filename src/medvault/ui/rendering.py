"""Server-side rendering of DICOM frames for the viewer: modality LUT, window/level, PNG.

Decoded frames (in modality units, e.g. Hounsfield) are kept in a per-process LRU cache, so
changing the window of a frame already seen costs only the windowing and the PNG encode
(a few milliseconds for 512x512). Rendered PNGs are cached too (and by the browser, since a
stored instance never changes: a different content under the same UID is rejected).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# CT presets (center, width) in Hounsfield units.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}


class _LRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            self.items.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        with self.lock:
            if key in self.items:
                self.size -= self.items.pop(key)[1]
            self.items[key] = (value, nbytes)
            self.size += nbytes
            while self.size > self.max_bytes and self.items:
                _, (_, n) = self.items.popitem(last=False)
                self.size -= n

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.size = 0


FRAME_CACHE = _LRU(384 * 1024 * 1024)
PNG_CACHE = _LRU(64 * 1024 * 1024)


@dataclass(frozen=True)
class FrameInfo:
    """What the viewer needs to know about a frame's display."""

    photometric: str
    default_center: float
    default_width: float
    color: bool
    modality: str


def _first(meta: dict[str, Any], tag: str) -> Any:
    element = meta.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value") or []
    return values[0] if values else None


def _from_functional_groups(meta: dict[str, Any], seq_tag: str, tag: str, frame: int) -> Any:
    """A value from Shared (5200,9229) or Per-frame (5200,9230) Functional Groups."""
    per_frame = (meta.get("52009230") or {}).get("Value") or []
    candidates = []
    if frame < len(per_frame):
        candidates.append(per_frame[frame])
    shared = (meta.get("52009229") or {}).get("Value") or []
    candidates.extend(shared[:1])
    for group in candidates:
        items = (group.get(seq_tag) or {}).get("Value") or []
        if items:
            value = _first(items[0], tag)
            if value is not None:
                return value
    return None


def rescale(meta: dict[str, Any], frame: int) -> tuple[float, float]:
    slope = _first(meta, "00281053")
    intercept = _first(meta, "00281052")
    if slope is None:
        slope = _from_functional_groups(meta, "00289145", "00281053", frame)
        intercept = _from_functional_groups(meta, "00289145", "00281052", frame)
    try:
        return float(slope if slope is not None else 1.0), float(intercept if intercept is not None else 0.0)
    except (TypeError, ValueError):
        return 1.0, 0.0


def stored_window(meta: dict[str, Any], frame: int) -> tuple[float, float] | None:
    center = _first(meta, "00281050")
    width = _first(meta, "00281051")
    if center is None or width is None:
        center = _from_functional_groups(meta, "00289132", "00281050", frame)
        width = _from_functional_groups(meta, "00289132", "00281051", frame)
    try:
        if center is not None and width is not None and float(width) > 0:
            return float(center), float(width)
    except (TypeError, ValueError):
        pass
    return None


def modality_frame(instance: Any, frame: int) -> np.ndarray:
    """The frame in modality units (float32), or uint8 RGB for colour images. Cached."""
    key = (instance.sop_instance_uid, instance.blob_key, frame)
    cached: np.ndarray | None = FRAME_CACHE.get(key)
    if cached is not None:
        return cached
    from medvault.archive.selectors import instance_pixels

    raw = np.asarray(instance_pixels(instance=instance, frame=frame))
    values: np.ndarray
    if raw.ndim == 3 and raw.shape[-1] in (3, 4):
        values = np.ascontiguousarray(raw[..., :3]).astype(np.uint8, copy=False)
    else:
        slope, intercept = rescale(instance.metadata or {}, frame)
        values = raw.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            values = values * np.float32(slope) + np.float32(intercept)
    FRAME_CACHE.put(key, values, values.nbytes)
    return values


def frame_info(instance: Any, values: np.ndarray, frame: int) -> FrameInfo:
    meta = instance.metadata or {}
    photometric = str(_first(meta, "00280004") or "MONOCHROME2")
    modality = str(_first(meta, "00080060") or "")
    color = values.ndim == 3
    window = stored_window(meta, frame)
    if window is None:
        window = auto_window(values, meta, modality)
    return FrameInfo(photometric, window[0], window[1], color, modality)


def auto_window(values: np.ndarray, meta: dict[str, Any], modality: str) -> tuple[float, float]:
    """A sensible window when the file carries none.

    8-bit images show their full range; CT gets the soft-tissue window; anything else (MR,
    PET, CR...) the 0.5-99.5 percentile range of the frame, which ignores a few outliers.
    """
    bits_stored = _first(meta, "00280101") or _first(meta, "00280100") or 16
    if values.ndim == 3 or (int(bits_stored) <= 8 and values.min() >= 0 and values.max() <= 255):
        return 127.5, 256.0
    if modality == "CT":
        return 40.0, 400.0
    sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
    low, high = np.percentile(sample, [0.5, 99.5])
    if high <= low:
        low, high = float(values.min()), float(values.max())
    width = max(float(high - low), 1.0)
    return float(low + width / 2), width


def window_to_uint8(values: np.ndarray, center: float, width: float, invert: bool = False) -> np.ndarray:
    """Linear window (DICOM PS3.3 C.11.2.1.2, simplified): [c - w/2, c + w/2] -> [0, 255]."""
    width = max(float(width), 1.0)
    low = center - width / 2.0
    scale = np.float32(255.0 / width)
    out = (values - np.float32(low)) * scale
    np.clip(out, 0, 255, out=out)
    image = out.astype(np.uint8)
    if invert:
        image = 255 - image
    return image


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: the frame is on the wire once; encode speed matters more than a few KB.
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def render_frame_png(
    instance: Any, frame: int, center: float | None = None, width: float | None = None,
    invert: bool | None = None, max_size: int | None = None,
) -> tuple[bytes, FrameInfo, tuple[float, float]]:
    """PNG bytes of the windowed frame, its display info and the window actually used."""
    values = modality_frame(instance, frame)
    info = frame_info(instance, values, frame)
    if center is None or width is None:
        center, width = info.default_center, info.default_width
    flip = info.photometric == "MONOCHROME1"
    if invert:
        flip = not flip
    key = (instance.sop_instance_uid, instance.blob_key, frame, round(center, 2), round(width, 2), flip, max_size)
    cached = PNG_CACHE.get(key)
    if cached is not None:
        return cached, info, (center, width)
    if info.color:
        image = (
            values
            if (center, width) == (127.5, 256.0)
            else window_to_uint8(values.astype(np.float32), center, width, flip)
        )
    else:
        image = window_to_uint8(values, center, width, flip)
    if max_size:
        pil = Image.fromarray(image)
        pil.thumbnail((max_size, max_size))
        image = np.asarray(pil)
    data = encode_png(image)
    PNG_CACHE.put(key, data, len(data))
    return data, info, (center, width)


_PIXELS_CACHE = _LRU(128 * 1024 * 1024)


def frame_pixels_bytes(
    instance: Any, frame: int
) -> tuple[bytes | None, str, np.ndarray, FrameInfo]:
    """The grey frame in modality units as little-endian bytes for the browser: ``int16`` when
    that holds every value exactly, else ``float32``. ``None`` for a colour frame."""
    values = modality_frame(instance, frame)
    info = frame_info(instance, values, frame)
    if info.color:
        return None, "", values, info
    key = (instance.sop_instance_uid, instance.blob_key, frame)
    cached = _PIXELS_CACHE.get(key)
    if cached is not None:
        return cached[0], cached[1], values, info
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    whole = low >= -32768 and high <= 32767 and bool(np.all(np.equal(np.mod(values, 1), 0)))
    dtype = "int16" if whole else "float32"
    body = values.astype("<i2" if whole else "<f4").tobytes()
    _PIXELS_CACHE.put(key, (body, dtype), len(body))
    return body, dtype, values, info
