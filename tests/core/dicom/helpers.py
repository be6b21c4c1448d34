"""Builders of bad input from real samples (tests only)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from medvault.core.dicom.parse import dataset_to_part10


def ct_small(shared_data: Path) -> pydicom.Dataset:
    return pydicom.dcmread(shared_data / "dicom/single_ct/CT_small.dcm")


def part10(ds: pydicom.Dataset) -> bytes:
    return dataset_to_part10(ds)


def without_pixel_data(shared_data: Path) -> bytes:
    ds = ct_small(shared_data)
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return part10(ds)


def rows_disagree(shared_data: Path) -> bytes:
    ds = ct_small(shared_data)
    ds.Rows = 256  # the pixel data holds 128 x 128
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return part10(ds)


def png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR of the given size and no image data (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zip_bytes(members: dict[str, bytes], compression: int = 8) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()
