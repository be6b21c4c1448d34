"""The JPEG-LS and HTJ2K fast decompression gives what the general one gives, or declines."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvault.core.codecs import decode_pixels, decompress_dataset, recompress
from medvault.core.codecs.lossless_to_native import native_part10
from medvault.core.dicom.parse import dataset_to_part10

# Signed 16-bit MR and CT, 2-frame 8-bit RGB (an odd size is in tests/dicomweb).
SAMPLES = ["MR_small.dcm", "CT_small.dcm", "SC_rgb_rle_2frame.dcm"]


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _compressed(name: str, codec: str = "jpegls") -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file(name))
    new, why = recompress(ds, decode_pixels(ds), codec)
    assert new is not None, why
    return new


def _general(data: bytes) -> bytes:
    return dataset_to_part10(decompress_dataset(pydicom.dcmread(io.BytesIO(data))))


@pytest.mark.parametrize("codec", ["jpegls", "htj2k"])
@pytest.mark.parametrize("name", SAMPLES)
def test_same_bytes_as_the_general_decompression(name, codec) -> None:
    original = pydicom.dcmread(get_testdata_file(name))
    data = _bytes(_compressed(name, codec))
    fast = native_part10(data)
    assert fast is not None
    assert fast == _general(data)
    assert np.array_equal(pydicom.dcmread(io.BytesIO(fast)).pixel_array, original.pixel_array)


def test_declines_what_it_does_not_handle() -> None:
    assert native_part10(b"not dicom") is None
    assert native_part10(_bytes(pydicom.dcmread(get_testdata_file("MR_small.dcm")))) is None  # native
    assert native_part10(_bytes(pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm")))) is None
    # Encapsulated Pixel Data written with VR OW (pydicom's sample file): the general path's.
    assert native_part10(get_testdata_file("MR_small_jpeg_ls_lossless.dcm", read=True)) is None
    assert native_part10(_bytes(_compressed("MR_small.dcm"))) is not None
    one_bit = _compressed("MR_small.dcm")
    one_bit.BitsAllocated, one_bit.BitsStored, one_bit.HighBit = 1, 1, 0
    assert native_part10(_bytes(one_bit)) is None
    frames_mismatch = _compressed("MR_small.dcm")
    frames_mismatch.NumberOfFrames = 2  # one fragment for two frames: not split here
    assert native_part10(_bytes(frames_mismatch)) is None
    wrong_size = _compressed("MR_small.dcm")
    wrong_size.Rows = int(wrong_size.Rows) + 1  # the codestream disagrees with the header
    assert native_part10(_bytes(wrong_size)) is None
    planar = _compressed("SC_rgb_rle_2frame.dcm")
    planar.PlanarConfiguration = 1
    assert native_part10(_bytes(planar)) is None
