"""Decompressing a stored JPEG-LS or HTJ2K Part 10 file straight to Explicit VR Little Endian.

The fast path of WADO-RS retrieval in a native syntax: only the header up to group 0028 is
parsed, the frames are decoded from the encapsulated fragments with imagecodecs (CharLS and
OpenJPH, which release the GIL, so callers may decode several files in threads), and the result is
the stored bytes with a new file meta and a native Pixel Data element
(``splice_native_pixels``); the data set is never re-serialised.

The output equals what ``decompress_dataset`` writes (pydicom's decoder, sign correction
included). Anything outside the cases checked here returns ``None`` and the caller takes the
general path: other syntaxes, 1-bit or 32-bit data, colour other than interleaved RGB,
fragments that cannot be assigned to frames, a codestream whose depth or shape disagrees
with the header.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, HTJ2KLossless, HTJ2KLosslessRPCL, JPEGLSLossless

from medvault.core.dicom.parse import splice_native_pixels

_PIXEL_HEADER = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
_PHOTOMETRIC_GREY = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")


def _past_group_0028(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > 0x0028FFFF


def _fragments(data: bytes, start: int) -> list[bytes] | None:
    """The fragments (Basic Offset Table excluded) of the encapsulated Pixel Data element,
    the last top-level element of ``data``; None when ``data`` has no such element."""
    position = data.rfind(_PIXEL_HEADER, start)
    if position < start:
        return None
    items: list[bytes] = []
    cursor = position + len(_PIXEL_HEADER)
    while cursor + 8 <= len(data):
        tag = data[cursor : cursor + 4]
        length = int.from_bytes(data[cursor + 4 : cursor + 8], "little")
        if tag == _SEQUENCE_DELIMITER:
            return items[1:] if items else None
        if tag != _ITEM or length == 0xFFFFFFFF or cursor + 8 + length > len(data):
            return None
        items.append(data[cursor + 8 : cursor + 8 + length])
        cursor += 8 + length
    return None


def _jpegls_precision(stream: bytes) -> int | None:
    """Sample precision P of the SOF55 (FFF7) marker segment of a JPEG-LS codestream."""
    head = stream[:4096]
    at = head.find(b"\xff\xf7")
    if at < 0 or at + 5 > len(head):
        return None
    return head[at + 4]


# The stored syntaxes this fast path decodes (callers check here before reading a blob).
FAST_SYNTAXES = frozenset({JPEGLSLossless, HTJ2KLossless, HTJ2KLosslessRPCL})


def _decoder(syntax: str) -> tuple[Any, tuple[type[Exception], ...]] | None:
    import imagecodecs

    if syntax == JPEGLSLossless:
        return imagecodecs.jpegls_decode, (imagecodecs.JpeglsError, ValueError, RuntimeError)
    if syntax in FAST_SYNTAXES:
        return imagecodecs.htj2k_decode, (imagecodecs.Htj2kError, ValueError, RuntimeError)
    return None


def native_part10(data: bytes) -> bytes | None:
    """Explicit VR Little Endian Part 10 bytes of the JPEG-LS Lossless or HTJ2K Lossless Part 10
    file ``data``, or None when this fast path does not apply (the caller then decompresses in
    full)."""
    if len(data) < 144 or data[128:132] != b"DICM" or data[136:138] != b"UL":
        return None
    try:
        ds = read_partial(BytesIO(data), stop_when=_past_group_0028)
        meta = ds.file_meta
        syntax = str(meta.get("TransferSyntaxUID", ""))
        decoder = _decoder(syntax)
        if decoder is None:
            return None
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        planar = ds.get("PlanarConfiguration")
    except (AttributeError, KeyError, TypeError, ValueError, EOFError, OSError):
        return None
    if bits_allocated not in (8, 16) or not 0 < bits_stored <= bits_allocated or frames < 1:
        return None
    if samples == 1:
        if photometric not in _PHOTOMETRIC_GREY:
            return None
        shape: tuple[int, ...] = (rows, columns)
    elif samples == 3 and photometric == "RGB" and planar is not None and int(planar) == 0 and not signed:
        shape = (rows, columns, 3)
    else:
        return None
    fragments = _fragments(data, 144 + int.from_bytes(data[140:144], "little"))
    if not fragments:
        return None
    if frames == 1:
        streams = [fragments[0] if len(fragments) == 1 else b"".join(fragments)]
    elif len(fragments) == frames:
        streams = list(fragments)
    else:
        return None
    dtype = np.dtype("<u1" if bits_allocated == 8 else "<u2")
    decode, errors = decoder
    decoded = []
    for stream in streams:
        try:
            frame = np.asarray(decode(stream))
        except errors:
            return None
        # HTJ2K carries the sign (a signed codestream decodes to signed samples); JPEG-LS does not.
        sign_extend = signed and syntax == JPEGLSLossless
        kind = "i" if signed and not sign_extend else "u"
        if frame.shape != shape or frame.dtype.itemsize != dtype.itemsize or frame.dtype.kind != kind:
            return None
        if sign_extend:
            precision = _jpegls_precision(stream)
            if precision is None:
                return None
            # As pydicom's decoder does: JPEG-LS carries no sign, so sign-extend from P.
            shift = 8 * dtype.itemsize - precision
            frame = np.ascontiguousarray(frame).view(np.int8 if dtype.itemsize == 1 else np.int16)
            if shift > 0:
                frame = (frame << shift) >> shift
        decoded.append(np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<"), copy=False))
    native = b"".join(frame.tobytes() for frame in decoded)
    if len(native) % 2:
        native += b"\x00"
    file_meta = FileMetaDataset(dict(meta.items()))
    file_meta.add_new(0x00020010, "UI", ExplicitVRLittleEndian)
    return splice_native_pixels(data, file_meta, native, "OW" if bits_allocated > 8 else "OB")
