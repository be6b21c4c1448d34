"""Native pixels straight from a Part 10 file, and their lossless re-encoding.

The deferred compression worker's fast path: an Explicit VR Little Endian file whose
top-level Pixel Data is its last element holds the pixels as one slice of its bytes, so they
are viewed in place (no data set parse of the pixels, no copy), encoded with the same encoder
as ``recompress`` and spliced back behind the received header bytes. Anything else returns
``None`` and the caller takes the general path.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian

from medvault.core.codecs.lossless import CODECS, JPEGXL_EFFORT, CodecError, encode_frames
from medvault.core.dicom.parse import splice_encapsulated_pixels

_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_TRAILING_PADDING = b"\xfc\xff\xfc\xffOB\x00\x00"
_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR")


@dataclass(frozen=True)
class NativeImage:
    """A Part 10 file's native pixels, viewed in place."""

    header: Dataset  # the data set up to Pixel Data (with its file meta)
    pixels: np.ndarray  # (frames, rows, cols[, samples]), a read-only view on the file's bytes
    end: int  # offset just after the Pixel Data value


def native_image(data: bytes) -> NativeImage | None:
    """The pixels of ``data`` as an array view, or ``None`` when the file is not simple.

    Simple: a Part 10 file in Explicit VR Little Endian whose top-level Pixel Data (OB/OW, 8
    or 16 bits allocated, 1 sample or 3 interleaved) is the last element, or is followed only
    by Data Set Trailing Padding. The array has the dtype pydicom gives these pixels (signed
    when Pixel Representation is 1); it is the stored bytes, with no sign extension or masking,
    so a caller compares its hash with the indexed pixels before trusting it.
    """
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    stream = BytesIO(data)
    try:
        header = pydicom.dcmread(stream, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None
    position = stream.tell()
    if str(header.file_meta.get("TransferSyntaxUID", "")) != ExplicitVRLittleEndian:
        return None
    element = data[position : position + 12]
    if len(element) != 12 or element[:4] != _PIXEL_TAG_LE or element[4:8] not in (b"OW\x00\x00", b"OB\x00\x00"):
        return None
    length = int.from_bytes(element[8:12], "little")
    end = position + 12 + length
    if length == 0xFFFFFFFF or end > len(data):
        return None
    if end != len(data) and not (
        data[end : end + 8] == _TRAILING_PADDING
        and end + 12 + int.from_bytes(data[end + 8 : end + 12], "little") == len(data)
    ):
        return None
    try:
        rows, cols = int(header.Rows), int(header.Columns)
        bits = int(header.BitsAllocated)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
        frames = int(header.get("NumberOfFrames", 1) or 1)
        signed = int(header.get("PixelRepresentation", 0) or 0) == 1
        planar = int(header.get("PlanarConfiguration", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits not in (8, 16) or samples not in (1, 3) or planar != 0 or min(rows, cols, frames) <= 0:
        return None
    shape = (frames, rows, cols) + ((samples,) if samples > 1 else ())
    count = frames * rows * cols * samples
    if count * bits // 8 > length:
        return None
    dtype = np.dtype(("<i" if signed else "<u") + str(bits // 8))
    pixels = np.frombuffer(data, dtype=dtype, count=count, offset=position + 12).reshape(shape)
    return NativeImage(header=header, pixels=pixels, end=end)


def recompressible(ds: Dataset) -> str:
    """Why ``ds``'s pixels are kept as received, or "" when they may be re-encoded
    (the rule of ``recompress``)."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _PHOTOMETRIC:
        return f"photometric interpretation {photometric} is kept as received"
    if samples == 3 and photometric != "RGB":
        return "colour data that is not RGB is kept as received"
    return ""


@dataclass(frozen=True)
class Spliced:
    """A re-encoded Part 10 file and where its encapsulated Pixel Data value lies."""

    data: bytes
    transfer_syntax_uid: str
    pixel_value: slice  # the encapsulated value (items), without the delimiter


def recompress_native(
    data: bytes, image: NativeImage, codec: str, *, jpegxl_effort: int = JPEGXL_EFFORT
) -> Spliced | None:
    """``data`` with its native pixels re-encoded losslessly by ``codec``, every other byte
    of the data set as received; ``None`` when the codec refuses the pixels or the file does
    not have the shape ``native_image`` describes. Not verified: see ``decode_spliced``."""
    if recompressible(image.header):
        return None
    spec = CODECS[codec]
    try:
        frames = encode_frames(codec, image.pixels, image.header, jpegxl_effort=jpegxl_effort)
    except CodecError:
        return None
    encapsulated = encapsulate(frames, has_bot=True)
    meta = FileMetaDataset(dict(image.header.file_meta.items()))
    meta.add_new(0x00020010, "UI", spec.transfer_syntax_uid)
    # The file meta is written anew; the data set bytes up to Pixel Data are copied.
    out = splice_encapsulated_pixels(data, meta, encapsulated)
    if out is None:
        return None
    tail = len(data) - image.end
    start = len(out) - tail - len(_DELIMITER) - len(encapsulated)
    if (
        out[start - 12 : start] != _PIXEL_TAG_LE + b"OB\x00\x00\xff\xff\xff\xff"
        or out[start + len(encapsulated) : start + len(encapsulated) + 8] != _DELIMITER
    ):
        return None  # the splice found another element than ours
    return Spliced(out, spec.transfer_syntax_uid, slice(start, start + len(encapsulated)))


def decode_spliced(spliced: Spliced, header: Dataset) -> np.ndarray:
    """Decode every frame of the Pixel Data that ``spliced`` holds, from its bytes, with the
    decoder readers use (pydicom's for that syntax): (frames, rows, cols[, samples])."""
    rows, cols = int(header.Rows), int(header.Columns)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    bits = int(header.BitsAllocated)
    options: dict[str, Any] = {
        "rows": rows, "columns": cols, "samples_per_pixel": samples, "bits_allocated": bits,
        "bits_stored": int(header.get("BitsStored", bits)),
        "pixel_representation": int(header.get("PixelRepresentation", 0) or 0),
        "photometric_interpretation": str(header.PhotometricInterpretation),
        "number_of_frames": frames, "planar_configuration": 0, "as_rgb": False,
    }
    array, _ = get_decoder(UID(spliced.transfer_syntax_uid)).as_array(spliced.data[spliced.pixel_value], **options)
    shape = (frames, rows, cols) + ((samples,) if samples > 1 else ())
    return np.asarray(array).reshape(shape)
