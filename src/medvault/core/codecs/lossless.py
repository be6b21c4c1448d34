"""Codec table, encode/verify, decode (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import JPEG2000LosslessEncoder, JPEGLSLosslessEncoder
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGLSLossless,
)

JPEGXL_LOSSLESS = "1.2.840.10008.1.2.4.110"
PIXEL_DATA = 0x7FE00010
JPEGXL_EFFORT = 3  # default: about as fast as JPEG 2000; 7 is ~9x slower and ~9 % smaller


def _register_jpegxl_decoder() -> None:
    from medvault.core.codecs.pydicom_jpegxl import register

    register()


def _teach_pydicom_jpegxl() -> None:
    """pydicom 3.0.2 predates the JPEG-XL transfer syntaxes (2024); add them to its UID table
    so that ``UID.is_transfer_syntax`` and writing such files work."""
    from pydicom._uid_dict import UID_dictionary

    names = {
        JPEGXL_LOSSLESS: ("JPEG XL Lossless", "JPEGXLLossless"),
        "1.2.840.10008.1.2.4.111": ("JPEG XL JPEG Recompression", "JPEGXLJPEGRecompression"),
        "1.2.840.10008.1.2.4.112": ("JPEG XL", "JPEGXL"),
    }
    for uid, (name, keyword) in names.items():
        UID_dictionary.setdefault(uid, (name, "Transfer Syntax", "", "", keyword))


_teach_pydicom_jpegxl()
_register_jpegxl_decoder()


class CodecError(ValueError):
    """The pixel data cannot be encoded or decoded by the chosen codec."""


def _meta(ds: Dataset, pixels: np.ndarray) -> dict[str, Any]:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": samples,
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.get("BitsStored", ds.BitsAllocated)),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "number_of_frames": 1,
        "planar_configuration": 0,
    }


def _pydicom_encoder(encoder: Any, plugin: str) -> Callable[[np.ndarray, dict[str, Any]], bytes]:
    def encode(frame: np.ndarray, meta: dict[str, Any]) -> bytes:
        try:
            options = {k: v for k, v in meta.items() if k != "jpegxl_effort"}
            return bytes(encoder.encode(frame, encoding_plugin=plugin, **options))
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CodecError(str(exc)) from None

    return encode


def _htj2k_encode(frame: np.ndarray, meta: dict[str, Any]) -> bytes:
    import imagecodecs

    try:
        return bytes(imagecodecs.htj2k_encode(frame, level=0, reversible=True))
    except (imagecodecs.Htj2kError, ValueError, RuntimeError) as exc:
        raise CodecError(str(exc)) from None


def _jpegxl_encode(frame: np.ndarray, meta: dict[str, Any]) -> bytes:
    import imagecodecs

    if frame.dtype.kind != "u":
        # JPEG-XL codes unsigned samples; signed data would need a convention decoders
        # don't share, so it is not re-encoded.
        raise CodecError("JPEG-XL encodes unsigned samples only")
    try:
        return bytes(
            imagecodecs.jpegxl_encode(
                frame, lossless=True, effort=meta.get("jpegxl_effort", JPEGXL_EFFORT),
                bitspersample=meta["bits_stored"],
            )
        )
    except (imagecodecs.JpegxlError, ValueError, RuntimeError) as exc:
        raise CodecError(str(exc)) from None


@dataclass(frozen=True)
class Codec:
    name: str
    transfer_syntax_uid: str
    encode_frame: Callable[[np.ndarray, dict[str, Any]], bytes]


CODECS: dict[str, Codec] = {
    "jpegls": Codec("jpegls", JPEGLSLossless, _pydicom_encoder(JPEGLSLosslessEncoder, "pyjpegls")),
    "jpeg2000": Codec(
        "jpeg2000", JPEG2000Lossless, _pydicom_encoder(JPEG2000LosslessEncoder, "pylibjpeg")
    ),
    "htj2k": Codec("htj2k", HTJ2KLossless, _htj2k_encode),
    "jpegxl": Codec("jpegxl", JPEGXL_LOSSLESS, _jpegxl_encode),
}


def codec_names() -> list[str]:
    """Names accepted by ``MEDVAULT_COMPRESSION`` (plus "none")."""
    return ["none", *CODECS]


def encode_frames(
    codec: str, pixels: np.ndarray, ds: Dataset, *, jpegxl_effort: int = JPEGXL_EFFORT
) -> list[bytes]:
    """Encode every frame of ``pixels`` (frames, rows, cols[, samples]) with ``codec``.

    ``jpegxl_effort`` (1-9) trades JPEG-XL encoding time for size; other codecs ignore it.
    """
    spec = CODECS[codec]
    meta = _meta(ds, pixels)
    meta["jpegxl_effort"] = max(1, min(9, int(jpegxl_effort)))
    return [spec.encode_frame(np.ascontiguousarray(frame), meta) for frame in pixels]


def decode_pixels(ds: Dataset) -> np.ndarray:
    """Decode all frames to an array (frames, rows, cols[, samples]), raw stored values.

    No modality LUT is applied; colour data is returned as pydicom converts it (RGB).
    """
    array = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
    return np.asarray(array).reshape(shape)


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """Decode only frame ``index`` (rows, cols[, samples]), raw stored values.

    Multi-frame retrieval (WADO-RS frames, viewers) must not decode every frame.
    """
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    array, _ = get_decoder(ts).as_array(ds, index=index)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
    return np.asarray(array).reshape(shape)


def _decode_encapsulated(ts: str, ds: Dataset) -> np.ndarray:
    array, _ = get_decoder(UID(ts)).as_array(ds)
    return np.asarray(array)


def _with_pixels(ds: Dataset, ts: str, pixel_element: tuple[str, bytes]) -> Dataset:
    """A new data set sharing ``ds``'s elements but with new pixel data and syntax.

    Elements are replaced with ``add_new`` rather than assigned, so ``ds`` is not changed.
    """
    new = Dataset(dict(ds.items()))  # a new mapping of the same (unchanged) elements
    new.add_new(PIXEL_DATA, pixel_element[0], pixel_element[1])
    meta = FileMetaDataset(dict(ds.file_meta.items()))
    meta.add_new(0x00020010, "UI", ts)
    new.file_meta = meta
    new.preamble = getattr(ds, "preamble", None)
    uid = UID(ts)
    new.set_original_encoding(uid.is_implicit_VR, uid.is_little_endian)
    return new


def recompress(
    ds: Dataset, pixels: np.ndarray, codec: str, *, verify: bool = True,
    jpegxl_effort: int = JPEGXL_EFFORT,
) -> tuple[Dataset | None, str]:
    """Re-encode ``pixels`` losslessly and verify it decodes to exactly ``pixels``.

    Returns the new data set, or ``None`` with the reason when the pixels stay as received
    (codec refused them, or the round trip differed in any pixel). ``verify=False`` skips the
    round trip, for a caller that decodes the final file itself before keeping it.
    """
    spec = CODECS[codec]
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"):
        return None, f"photometric interpretation {photometric} is kept as received"
    if samples == 3 and photometric != "RGB":
        return None, "colour data that is not RGB is kept as received"
    try:
        frames = encode_frames(codec, pixels, ds, jpegxl_effort=jpegxl_effort)
    except CodecError as exc:
        return None, f"{codec} could not encode: {exc}"
    new = _with_pixels(ds, spec.transfer_syntax_uid, ("OB", encapsulate(frames, has_bot=True)))
    if samples == 3:
        new.add_new(0x00280006, "US", 0)  # PlanarConfiguration: interleaved, as encoded
    if not verify:
        return new, ""
    try:
        decoded = _decode_encapsulated(spec.transfer_syntax_uid, new)
    except (ValueError, RuntimeError, TypeError, CodecError) as exc:
        return None, f"{codec} output failed to decode: {exc}"
    if decoded.size != pixels.size or not np.array_equal(decoded.reshape(pixels.shape), pixels):
        return None, f"{codec} round trip differed from the received pixels"
    return new, ""


def decompress_dataset(ds: Dataset) -> Dataset:
    """Return a copy of ``ds`` with native pixel data in Explicit VR Little Endian."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts == ExplicitVRLittleEndian or "PixelData" not in ds:
        new = _with_pixels(ds, ExplicitVRLittleEndian, (ds["PixelData"].VR, ds.PixelData)) if (
            "PixelData" in ds
        ) else ds
        if new is ds:
            # Copies: Dataset(ds) and FileMetaDataset(meta) share the element dict of ``ds``.
            new = Dataset(dict(ds.items()))
            new.file_meta = FileMetaDataset(dict(ds.file_meta.items()))
            new.file_meta.add_new(0x00020010, "UI", ExplicitVRLittleEndian)
            new.set_original_encoding(False, True)
        return new
    pixels = decode_pixels(ds)
    bits = int(ds.BitsAllocated)
    if bits == 1:
        # pydicom unpacks 1-bit data to a byte a pixel; native 1-bit data is packed, eight
        # pixels a byte, across frames (PS3.5 8.1.1).
        data = bytes(pack_bits(pixels.reshape(-1)))
    else:
        little = pixels.astype(pixels.dtype.newbyteorder("<")) if pixels.dtype.itemsize > 1 else pixels
        data = np.ascontiguousarray(little).tobytes()
    if len(data) % 2:
        data += b"\x00"
    new = _with_pixels(ds, ExplicitVRLittleEndian, ("OW" if bits > 8 else "OB", data))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3:
        new.add_new(0x00280006, "US", 0)
        if str(ds.PhotometricInterpretation).startswith("YBR"):
            # pydicom returned RGB; say so.
            new.add_new(0x00280004, "CS", "RGB")
    return new
