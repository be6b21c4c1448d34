"""A pydicom decoding plugin for the JPEG XL transfer syntaxes, backed by imagecodecs.

pydicom 3.0.2 predates JPEG XL in DICOM (2024). ``register()`` adds a ``Decoder`` for the
three UIDs to pydicom's decoder table, so ``Dataset.pixel_array`` and
``Dataset.decompress()`` work on JPEG XL instances like on any other syntax.
"""

from __future__ import annotations

from typing import Any

JPEGXL_UIDS = ("1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112")
DECODER_DEPENDENCIES = {uid: ("imagecodecs",) for uid in JPEGXL_UIDS}


def is_available(uid: str) -> bool:
    """True when imagecodecs with JPEG XL support is installed."""
    try:
        import imagecodecs
    except ImportError:
        return False
    return uid in JPEGXL_UIDS and bool(imagecodecs.JPEGXL.available)


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """Decode one JPEG XL codestream to interleaved little-endian samples."""
    import imagecodecs
    import numpy as np

    frame = np.asarray(imagecodecs.jpegxl_decode(src))
    if frame.dtype.itemsize > 1:
        frame = frame.astype(frame.dtype.newbyteorder("<"), copy=False)
    if frame.ndim == 3:
        runner.set_option("planar_configuration", 0)
    return frame.tobytes()


def register() -> None:
    """Add JPEG XL decoders to pydicom's table (idempotent)."""
    from pydicom.pixels.decoders import base
    from pydicom.uid import UID

    table: dict[Any, Any] = base._PIXEL_DATA_DECODERS
    for uid in JPEGXL_UIDS:
        if uid in table:
            continue
        decoder = base.Decoder(UID(uid))
        decoder.add_plugin("imagecodecs", (__name__, "_decode_frame"))
        table[UID(uid)] = (decoder, "3.0")
