"""Image preprocessing shared by training and inference (pure numpy + Pillow, no Django).

The two classification sets are 8-bit PNG/JPEG exports. Everything the models see goes through
:func:`prepare_gray` (grey-scale, pad to square, resize) so that training and serving match
byte for byte. DICOM inputs are first mapped to the same 8-bit space by :func:`dicom_to_uint8`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# Fixed display windows used to turn DICOM pixel data into the 8-bit images the models saw.
# The chest CT exports in the training set are lung-window renderings (dark lungs, bright soft
# tissue); we use the standard lung window: centre -600 HU, width 1500 HU
# (i.e. -1350 HU -> 0, +150 HU -> 255).
CT_WINDOW_CENTER = -600.0
CT_WINDOW_WIDTH = 1500.0
# MR has no absolute unit: the 0.5th percentile of the slice maps to 0 and the 99.5th percentile
# to MR_HIGH_VALUE. The brain JPEG exports are not saturated: their 99.5th percentile is 180 in
# the median (measured on the training set), so 200 keeps DICOM input in the same range.
MR_PERCENTILES = (0.5, 99.5)
MR_HIGH_VALUE = 200.0


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW or HxWxC (RGB/RGBA/LA) -> uint8 HxW using Pillow's ITU-R 601 luma."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
        if arr.shape[2] in (1, 2):
            return np.ascontiguousarray(arr[:, :, 0])
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB").convert("L"))
    raise ValueError(f"unsupported image shape {arr.shape}")


@dataclass(frozen=True)
class Placement:
    """Where the original image sits inside the square model input (for mapping heat-maps back)."""

    height: int
    width: int
    side: int
    top: int
    left: int


def pad_square(gray: np.ndarray) -> tuple[np.ndarray, Placement]:
    """Pad with black to a centred square: aspect ratio is kept, never stretched."""
    h, w = gray.shape
    side = max(h, w)
    top = (side - h) // 2
    left = (side - w) // 2
    out = np.zeros((side, side), dtype=np.uint8)
    out[top : top + h, left : left + w] = gray
    return out, Placement(h, w, side, top, left)


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))


def prepare_gray(image: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """uint8 image (any shape accepted by :func:`to_gray`) -> uint8 size x size, and placement."""
    square, placement = pad_square(to_gray(image))
    return resize(square, size), placement


INPUT_MASKS = ("", "lung_fields")


def check_mask(mask: str) -> str:
    if mask not in INPUT_MASKS:
        raise ValueError(f"unknown input mask {mask!r}; known: {', '.join(filter(None, INPUT_MASKS))}")
    return mask


def apply_mask(square: np.ndarray, mask: str) -> np.ndarray:
    """The model card's input mask (``input.mask``) on a :func:`prepare_gray` square: ``""`` for
    none, ``"lung_fields"`` to black out everything outside the lung fields
    (:func:`medvault.core.ml.lung_fields.keep_lung_fields`)."""
    if not check_mask(mask):
        return square
    from medvault.core.ml.lung_fields import keep_lung_fields

    return keep_lung_fields(square)


def to_input(gray_square: np.ndarray) -> np.ndarray:
    """uint8 SxS -> float32 1x1xSxS in [0, 1] (the ONNX graph normalises further itself)."""
    return (gray_square.astype(np.float32) / 255.0)[None, None]


def heatmap_to_image(cam: np.ndarray, placement: Placement) -> np.ndarray:
    """Low-resolution class-activation map (h x w, any float) -> float32 in [0, 1] with the
    original image's H x W (upsampled to the padded square, then the padding cropped off)."""
    cam = np.asarray(cam, dtype=np.float32)
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    img = Image.fromarray(cam, mode="F").resize(
        (placement.side, placement.side), Image.Resampling.BILINEAR
    )
    full = np.asarray(img, dtype=np.float32)
    full = full[placement.top : placement.top + placement.height,
                placement.left : placement.left + placement.width]
    return np.clip(full, 0.0, 1.0).astype(np.float32)


def window_to_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    lo = center - width / 2.0
    scaled = (values.astype(np.float64) - lo) / width * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def percentile_to_uint8(values: np.ndarray, lo_pct: float, hi_pct: float,
                        high_value: float = 255.0) -> np.ndarray:
    v = values.astype(np.float64)
    lo, hi = np.percentile(v, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    scaled = (v - lo) / (hi - lo) * high_value
    out: np.ndarray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _first_frame(arr: np.ndarray, ds: Any) -> np.ndarray:
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[frames // 2]  # middle frame of a multi-frame object
    if spp == 1 and arr.ndim == 3:  # defensive: take the middle slice
        arr = arr[arr.shape[0] // 2]
    return arr


def dicom_to_uint8(ds: Any, keep_colour: bool = False) -> np.ndarray:
    """pydicom Dataset -> 8-bit image in the space the models were trained in.

    * CT: modality LUT (RescaleSlope/Intercept -> Hounsfield units), then the fixed chest
      window (:data:`CT_WINDOW_CENTER`, :data:`CT_WINDOW_WIDTH`).
    * Already 8-bit data (secondary captures of PNG/JPEG exports, RGB): used as given.
    * Other modalities (MR, ...): percentile min-max scaling (:data:`MR_PERCENTILES`).
    MONOCHROME1 is inverted so that higher values are brighter, as in the exports.
    """
    from pydicom.pixels.processing import apply_modality_lut

    arr = np.asarray(ds.pixel_array)
    arr = _first_frame(arr, ds)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if spp == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels.processing import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        if arr.dtype != np.uint8:
            arr = percentile_to_uint8(arr, 0.0, 100.0)
        return arr if keep_colour else to_gray(arr)
    modality = str(getattr(ds, "Modality", "")).upper()
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    # A CT in Hounsfield units is 12-16 bit; 8-bit "CT" pixels are a rendered export (a
    # Secondary Capture of an uploaded PNG/JPEG) and are already in the models' space.
    if modality == "CT" and not (bits <= 8 and arr.dtype == np.uint8):
        hu = apply_modality_lut(arr, ds)
        out = window_to_uint8(np.asarray(hu), CT_WINDOW_CENTER, CT_WINDOW_WIDTH)
    elif bits <= 8 and arr.dtype == np.uint8:
        out = arr
    else:
        out = percentile_to_uint8(np.asarray(apply_modality_lut(arr, ds)), *MR_PERCENTILES,
                                  high_value=MR_HIGH_VALUE)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out
