"""Parse and validate one DICOM instance from bytes.

Validation: a readable Part 10 file (or a raw dataset when the caller knows the transfer
syntax, e.g. C-STORE), the four required UIDs, and pixel data that is consistent with
Rows/Columns/BitsAllocated/SamplesPerPixel/NumberOfFrames and decodes, every frame.
Any failure raises ``DicomRejected`` with a reason a user can act on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

import medvault.core.codecs  # noqa: F401  (registers the JPEG XL syntaxes with pydicom)
from medvault.core.dicom.json import _element_json, canonical_sha256, dataset_to_json
from medvault.core.dicom.wellformed import (
    NESTED_TOO_DEEPLY,
    attribute_name,
    bad_element_reason,
    body_offset,
    truncation_reason,
)

logger = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# Storage classes whose IOD has Pixel Data as a mandatory part besides those that pydicom's
# dictionary names "... Image Storage ..." (segmentations and parametric maps).
PIXEL_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map Storage
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
    "1.2.840.10008.5.1.4.1.1.81.1",  # Ophthalmic Thickness Map Storage
    "1.2.840.10008.5.1.4.1.1.82.1",  # Corneal Topography Map Storage
}
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_KEYWORD_WORDS = {
    "PixelData": "Pixel Data",
    "FloatPixelData": "Float Pixel Data",
    "DoubleFloatPixelData": "Double Float Pixel Data",
}
NATIVE_SYNTAXES = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    "1.2.840.10008.1.2.1.99",  # deflated explicit LE: the dataset is deflated, pixels are native
}
# Transfer syntaxes whose pixel data may have lost information: never re-encoded.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.111",
    "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
}
_UID_RE = re.compile(r"\A[0-9]+(\.[0-9]+)*\Z")
# What pydicom and its pixel plugins raise on malformed input.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NotImplementedError,
    OverflowError,
    RuntimeError,
    OSError,
    struct.error,
    zlib.error,
    BytesLengthException,  # not a ValueError: a value's length that its VR cannot hold
)


class DicomRejected(ValueError):
    """The input is not an instance we can store; ``reason`` says why."""

    def __init__(self, reason: str, *, sop_instance_uid: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sop_instance_uid = sop_instance_uid


class DicomTooLarge(DicomRejected):
    """The input is over a size limit (pixels per frame, decoded bytes)."""


class NestedTooDeeply(DicomRejected):
    """The data set nests sequences too deeply to be read at all (``NESTED_TOO_DEEPLY``)."""


class NotStorageClass(DicomRejected):
    """The SOP class is known and is no storage class (a DICOMDIR, a commitment request)."""


@dataclass
class ParsedInstance:
    """A validated instance with its decoded pixels and identity hashes."""

    dataset: Dataset
    received_transfer_syntax_uid: str
    metadata: dict[str, Any]
    content_sha256: str
    pixels: np.ndarray | None = None  # all frames: (frames, rows, cols[, samples])
    pixel_sha256: str = ""
    raw_pixel_bytes: int = 0
    lossy: bool = False
    # True when ``pixels`` reproduces the stored pixel bytes exactly (safe to re-encode).
    pixels_exact: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)


def needs_pixels(sop_class_uid: str) -> bool:
    """True for the storage classes whose instances must carry pixel data (images,
    segmentations, parametric maps); every other class is stored without."""
    if sop_class_uid in PIXEL_SOP_CLASSES:
        return True
    uid = UID(sop_class_uid)
    return uid.type == "SOP Class" and "Image Storage" in uid.name


def _not_a_storage_class(sop_class_uid: str) -> str:
    """The reason a known UID is no storage SOP class (empty when it may be one).

    UIDs pydicom does not know (private storage classes) are taken as storage classes.
    """
    uid = UID(sop_class_uid)
    if not uid.type:
        return ""
    if uid.type == "SOP Class" and "Storage" in uid.name and not (
        "Commitment" in uid.name or "Print" in uid.name
    ):
        return ""
    return (
        f"SOPClassUID {sop_class_uid} ({uid.name}) is not a storage SOP class, so this "
        "is no object an archive keeps"
    )


def _uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    if not text:
        raise DicomRejected(f"required attribute {keyword} is missing or empty")
    if len(text) > 64 or not _UID_RE.match(text):
        raise DicomRejected(f"{keyword} {text[:80]!r} is not a valid UID")
    return text


def _read(data: bytes, transfer_syntax_uid: str | None) -> Dataset:
    if len(data) == 0:
        raise DicomRejected("empty file")
    has_prefix = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_prefix and not transfer_syntax_uid:
        raise DicomRejected(
            "not a DICOM Part 10 file: the 128-byte preamble, 'DICM' prefix and File Meta "
            "Information are missing, so the transfer syntax is unknown"
        )
    try:
        if has_prefix:
            ds = pydicom.dcmread(BytesIO(data))
        else:
            ts = UID(transfer_syntax_uid or "")
            ds = pydicom.dcmread(BytesIO(data), force=True)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ts
            ds.set_original_encoding(ts.is_implicit_VR, ts.is_little_endian)
        # Malformed values surface when dataset_to_json converts every element, below.
    except DicomRejected:
        raise
    except InvalidDicomError as exc:
        logger.info("unreadable DICOM: %s", exc)
        raise DicomRejected(
            "not a readable DICOM Part 10 file: its File Meta Information is missing or malformed"
        ) from None
    except (EOFError, struct.error) as exc:
        logger.info("unreadable DICOM: %s", exc)
        raise DicomRejected("the file is truncated: it ends inside a data element") from None
    except RecursionError:
        raise NestedTooDeeply(NESTED_TOO_DEEPLY) from None
    except _READ_ERRORS as exc:
        logger.info("unreadable DICOM: %r", exc)
        raise DicomRejected(
            "the data set is malformed: an element's tag, VR or length cannot be read"
        ) from None
    if not len(ds):
        raise DicomRejected("the file holds no DICOM data set")
    return ds


def _expected_native_bytes(ds: Dataset, frames: int) -> int:
    bits = int(ds.BitsAllocated)
    pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * frames
    if bits == 1:
        return (pixels + 7) // 8
    return pixels * (bits // 8)


def _little_endian_bytes(array: np.ndarray) -> bytes:
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def pixel_sha256(array: np.ndarray) -> str:
    """SHA-256 of decoded pixel values (shape, dtype and little-endian bytes)."""
    digest = hashlib.sha256()
    le = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    digest.update(f"{array.shape}|{le.str}|".encode())
    digest.update(_little_endian_bytes(array))
    return digest.hexdigest()


def _undecodable(ts: str, encapsulated: bool) -> str:
    name = UID(ts).name if ts else "unknown"
    if not encapsulated:
        return f"Pixel Data cannot be decoded in transfer syntax {name} ({ts})"
    try:
        available = get_decoder(UID(ts)).is_available
    except NotImplementedError:
        available = False
    if not available:
        return f"Pixel Data in transfer syntax {name} ({ts}) cannot be decoded: no decoder for it is installed"
    return (
        f"Pixel Data in transfer syntax {name} ({ts}) cannot be decoded: the compressed data is "
        "corrupt, or uses a variant of the syntax the installed decoders do not support"
    )


def _check_and_decode(ds: Dataset, ts: str, parsed: ParsedInstance, limits: dict[str, int]) -> None:
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise DicomRejected(f"image attribute {keyword} is missing")
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits = int(ds.BitsAllocated)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise DicomRejected(
            f"{attribute_name(0x00280008)} is {str(ds.get('NumberOfFrames'))[:20]!r}, not a number"
        ) from None
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise DicomRejected(f"Rows {rows}, Columns {cols}, NumberOfFrames {frames} must be positive")
    if bits not in (1, 8, 16, 32, 64):
        raise DicomRejected(f"BitsAllocated {bits} is not supported")
    if samples not in (1, 3):
        raise DicomRejected(f"SamplesPerPixel {samples} is not supported")
    max_pixels = limits["max_image_pixels"]
    if rows * cols > max_pixels:
        raise DicomTooLarge(
            f"image of {cols}x{rows} pixels exceeds the limit of {max_pixels} pixels per frame"
        )
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    value = ds[keyword].value
    encapsulated = keyword == "PixelData" and ts not in NATIVE_SYNTAXES
    photometric = str(ds.PhotometricInterpretation)
    if encapsulated:
        raw = _expected_native_bytes(ds, frames)  # decoded: YBR_FULL_422 comes back full size
    elif keyword != "PixelData":
        raw = rows * cols * samples * frames * (4 if keyword == "FloatPixelData" else 8)
    else:
        # pydicom's rule per photometric interpretation and bit depth: YBR_FULL_422 holds
        # two bytes a pixel, 1-bit data is packed across frames.
        raw = int(get_expected_length(ds, "bytes"))
    if raw > limits["max_decoded_bytes"]:
        raise DicomTooLarge(f"decoded pixel data would be {raw} bytes, over the limit")
    parsed.raw_pixel_bytes = raw
    if not encapsulated:
        length = len(value) if value is not None else 0
        frame_bytes = max(raw // frames, 1)
        if length < raw or length - raw >= frame_bytes:
            raise DicomRejected(
                f"{_KEYWORD_WORDS[keyword]} holds {length} bytes but Rows {rows} x Columns {cols} x "
                f"SamplesPerPixel {samples} x NumberOfFrames {frames} at {bits} bits "
                f"({photometric}) needs {raw} bytes"
            )
        if length > raw + 1:
            parsed.warnings.append(
                f"{_KEYWORD_WORDS[keyword]} holds {length} bytes, {length - raw} more than the image needs: "
                "the excess is padding, not pixels"
            )
    try:
        array = ds.pixel_array  # decodes every frame
    except _READ_ERRORS as exc:
        logger.info("%s: pixel decoding failed: %r", ds.get("SOPInstanceUID"), exc)
        raise DicomRejected(_undecodable(ts, encapsulated)) from None
    shape = (frames, rows, cols) + ((samples,) if samples > 1 else ())
    if array.size != int(np.prod(shape)):
        raise DicomRejected(
            f"decoded pixel data has shape {array.shape}, but the header says {shape}"
        )
    array = array.reshape(shape)
    parsed.pixels = array
    parsed.pixel_sha256 = pixel_sha256(array)
    parsed.lossy = ts in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")) == "01"
    if not encapsulated and keyword == "PixelData" and bits in (8, 16):
        native = bytes(value[:raw])
        if ts == ExplicitVRBigEndian and bits == 16:
            parsed.pixels_exact = array.astype(array.dtype.newbyteorder(">")).tobytes() == native
        else:
            parsed.pixels_exact = _little_endian_bytes(array) == native
    elif encapsulated and not parsed.lossy:
        # Decoded by a lossless codec: the decoded values are the pixel values.
        parsed.pixels_exact = bits in (8, 16)


def parse_instance(
    data: bytes,
    *,
    transfer_syntax_uid: str | None = None,
    max_image_pixels: int = 64 * 1024 * 1024,
    max_decoded_bytes: int = 2 * 1024**3,
    with_metadata: bool = True,
) -> ParsedInstance:
    """Read, validate and decode one instance.

    Parameters
    ----------
    data
        A DICOM Part 10 file, or a bare data set when ``transfer_syntax_uid`` is given.
    transfer_syntax_uid
        The transfer syntax of a bare data set (e.g. the presentation context of a C-STORE).
    max_image_pixels
        Largest Rows x Columns of one frame.
    max_decoded_bytes
        Largest decoded size of all frames together.
    with_metadata
        False leaves ``metadata`` empty and ``content_sha256`` blank (for re-reading a stored
        instance whose index already holds both).
    """
    ds = _read(data, transfer_syntax_uid)
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    try:
        # Iterating converts every raw element now, so a corrupt one (say an unknown VR) is
        # rejected here instead of raising later, when the file meta is rewritten.
        for _element in meta:
            pass
    except _READ_ERRORS as exc:
        logger.info("malformed file meta: %r", exc)
        raise DicomRejected(
            "the File Meta Information is malformed: "
            + (bad_element_reason(meta, _element_json) or "an element cannot be read")
        ) from None
    if str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY or (
        "DirectoryRecordSequence" in ds
    ):
        raise DicomRejected(
            "this is a DICOMDIR (Media Storage Directory), an index of a DICOM file-set and "
            "not an instance; ingest the folder that holds the files it references"
        )
    sop_uid = _uid(ds, "SOPInstanceUID")
    try:
        _uid(ds, "SOPClassUID")
        _uid(ds, "StudyInstanceUID")
        _uid(ds, "SeriesInstanceUID")
    except DicomRejected as exc:
        raise DicomRejected(exc.reason, sop_instance_uid=sop_uid) from None
    ts = str(meta.get("TransferSyntaxUID", "") or transfer_syntax_uid or "")
    if not ts:
        raise DicomRejected("File Meta Information has no TransferSyntaxUID", sop_instance_uid=sop_uid)
    try:
        metadata = dataset_to_json(ds) if with_metadata else {}
    except RecursionError:
        # The JSON conversion recurses deeper per level than the reader: a data set the reader
        # managed can still exhaust the stack here.
        raise NestedTooDeeply(NESTED_TOO_DEEPLY, sop_instance_uid=sop_uid) from None
    except _READ_ERRORS as exc:
        logger.info("%s: DICOM JSON conversion failed: %r", sop_uid, exc)
        reason = bad_element_reason(ds, _element_json) or "an element cannot be read"
        raise DicomRejected(f"invalid attribute value: {reason}", sop_instance_uid=sop_uid) from None
    parsed = ParsedInstance(
        dataset=ds,
        received_transfer_syntax_uid=ts,
        metadata=metadata,
        content_sha256=canonical_sha256(metadata) if with_metadata else "",
    )
    has_pixels = any(k in ds for k in PIXEL_KEYWORDS)
    sop_class = str(ds.SOPClassUID)
    not_storage = _not_a_storage_class(sop_class)
    if not_storage:
        raise NotStorageClass(not_storage, sop_instance_uid=sop_uid)
    if not has_pixels:
        if not needs_pixels(sop_class):
            # SR, RT, waveforms, encapsulated documents, presentation states, key objects,
            # raw data, private classes...: there is nothing to decode.
            _check_complete(data, ts, transfer_syntax_uid, sop_uid)
            return _finish_meta(parsed, ts)
        raise DicomRejected(
            f"no Pixel Data: SOP class {sop_class} ({UID(sop_class).name}) is an image "
            "class, so an instance without pixels is incomplete",
            sop_instance_uid=sop_uid,
        )
    try:
        _check_and_decode(
            ds, ts, parsed, {"max_image_pixels": max_image_pixels, "max_decoded_bytes": max_decoded_bytes}
        )
    except DicomRejected as exc:
        # The same kind of refusal (too large, say), now naming the instance.
        raise type(exc)(exc.reason, sop_instance_uid=sop_uid) from None
    _check_complete(data, ts, transfer_syntax_uid, sop_uid)
    return _finish_meta(parsed, ts)


def _check_complete(data: bytes, ts: str, bare_syntax: str | None, sop_uid: str) -> None:
    """Refuse a data set that pydicom read only in part (cut inside a sequence, say)."""
    if ts == "1.2.840.10008.1.2.1.99":
        return  # deflated: the bytes are compressed; inflating them already checked the end
    offset = body_offset(data) if not bare_syntax or data[128:132] == b"DICM" else 0
    if offset is None:
        return
    syntax = UID(ts)
    try:
        little, implicit = syntax.is_little_endian, syntax.is_implicit_VR
    except ValueError:  # a UID that is not a transfer syntax pydicom knows
        return
    reason = truncation_reason(data, offset, little=little, implicit=implicit)
    if reason == NESTED_TOO_DEEPLY:
        raise NestedTooDeeply(reason, sop_instance_uid=sop_uid)
    if reason:
        raise DicomRejected(reason, sop_instance_uid=sop_uid)


def _finish_meta(parsed: ParsedInstance, ts: str) -> ParsedInstance:
    """Make the file meta consistent with the data set (it is rewritten on storage)."""
    ds = parsed.dataset
    meta = FileMetaDataset()
    old = getattr(ds, "file_meta", None)
    if old is not None:
        for element in old:
            meta.add(element)
    meta.add_new(0x00020002, "UI", str(ds.SOPClassUID))
    meta.add_new(0x00020003, "UI", str(ds.SOPInstanceUID))
    meta.add_new(0x00020010, "UI", ts)
    if "ImplementationClassUID" not in meta:
        meta.add_new(0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID)
    ds.file_meta = meta
    return parsed


def dataset_to_part10(ds: Dataset) -> bytes:
    """Encode a data set with its file meta as a Part 10 file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


def splice_encapsulated_pixels(
    data: bytes, file_meta: FileMetaDataset, encapsulated: bytes
) -> bytes | None:
    """Part 10 bytes = received bytes with new file meta and encapsulated Pixel Data.

    Only for Explicit VR Little Endian input whose top-level Pixel Data is the last
    element (or is followed only by Data Set Trailing Padding): then every other byte of the
    data set stays exactly as received, and the costly re-serialisation of the whole data set
    is skipped. Returns ``None`` when the input does not have that shape (the caller then writes the data set in full).
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    if len(data) < 144 or data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return None
    if data[136:138] != b"UL":
        return None
    body_start = 144 + int.from_bytes(data[140:144], "little")
    for vr in (b"OW", b"OB"):
        position = data.rfind(_PIXEL_TAG_LE + vr + b"\x00\x00")
        if position < body_start:
            continue
        end = position + 12 + int.from_bytes(data[position + 8 : position + 12], "little")
        if end == len(data) or _is_trailing_padding(data, end):
            break
    else:
        return None
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, file_meta, enforce_standard=True)
    # ``encapsulated`` is what pydicom.encaps.encapsulate returns: the items without the
    # Sequence Delimitation Item (FFFE,E0DD), which the writer adds; so do we.
    delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    element = _PIXEL_TAG_LE + b"OB\x00\x00\xff\xff\xff\xff" + encapsulated + delimiter
    return b"".join(
        (data[:128], b"DICM", meta.getvalue(), data[body_start:position], element, data[end:])
    )


def _is_trailing_padding(data: bytes, offset: int) -> bool:
    """True when ``data[offset:]`` is exactly one Data Set Trailing Padding element."""
    if data[offset : offset + 8] != b"\xfc\xff\xfc\xffOB\x00\x00":
        return False
    return offset + 12 + int.from_bytes(data[offset + 8 : offset + 12], "little") == len(data)


_ENCAPSULATED_PIXEL_LE = _PIXEL_TAG_LE + b"OB\x00\x00\xff\xff\xff\xff"
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"


def splice_native_pixels(
    data: bytes, file_meta: FileMetaDataset, native: bytes, vr: str
) -> bytes | None:
    """Part 10 bytes = ``data`` (encapsulated) with native Pixel Data and new file meta.

    The reverse of ``splice_encapsulated_pixels``, for decompressing on retrieval: the data
    set of every encapsulated syntax is Explicit VR Little Endian, so only the file meta and
    the top-level Pixel Data element change, and the rest is copied as stored instead of
    re-serialising the whole data set. ``native`` is the little-endian pixel bytes (even
    length), ``vr`` "OW" or "OB". Returns ``None`` when ``data`` does not have that shape
    (the caller then writes the data set in full).
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    if vr not in ("OW", "OB") or len(native) % 2 or len(native) >= 0xFFFFFFFF:
        return None
    if len(data) < 144 or data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return None
    if data[136:138] != b"UL":
        return None
    body_start = 144 + int.from_bytes(data[140:144], "little")
    position = data.rfind(_ENCAPSULATED_PIXEL_LE, body_start)
    if position < body_start:
        return None
    # Walk the items to the Sequence Delimitation Item: this also proves that ``position``
    # is an element header and not bytes inside a compressed frame.
    cursor = position + 12
    end = -1
    while cursor + 8 <= len(data):
        tag = data[cursor : cursor + 4]
        length = int.from_bytes(data[cursor + 4 : cursor + 8], "little")
        if tag == _SEQUENCE_DELIMITER:
            end = cursor + 8
            break
        if tag != _ITEM or length == 0xFFFFFFFF:
            return None
        cursor += 8 + length
    if end < 0 or not (end == len(data) or _is_trailing_padding(data, end)):
        return None
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, file_meta, enforce_standard=True)
    element = _PIXEL_TAG_LE + vr.encode() + b"\x00\x00" + len(native).to_bytes(4, "little")
    return b"".join(
        (data[:128], b"DICM", meta.getvalue(), data[body_start:position], element, native, data[end:])
    )
