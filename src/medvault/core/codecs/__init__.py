"""Lossless re-encoding of pixel data with bit-exact verification, and decoding back.

JPEG-LS and JPEG 2000 go through pydicom's encoder registry (plugins ``pyjpegls`` and
``pylibjpeg``); HTJ2K and JPEG-XL are encoded with imagecodecs and encapsulated with
``pydicom.encaps``. pydicom 3.0.2 decodes everything except JPEG-XL, for which this package
registers an imagecodecs-backed decoder in pydicom's decoder table on import
(``pydicom_jpegxl``), so ``Dataset.pixel_array`` works on every stored syntax.
"""

from medvault.core.codecs.lossless import (
    CODECS,
    JPEGXL_LOSSLESS,
    CodecError,
    codec_names,
    decode_frame,
    decode_pixels,
    decompress_dataset,
    encode_frames,
    recompress,
)

__all__ = [
    "CODECS",
    "JPEGXL_LOSSLESS",
    "CodecError",
    "codec_names",
    "decode_frame",
    "decode_pixels",
    "decompress_dataset",
    "encode_frames",
    "recompress",
]
