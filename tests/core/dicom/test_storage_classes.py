"""Which objects parse: every storage SOP class, the pixel size rules, and reasons in words.

Uses pydicom's bundled test files, so it runs in a fresh clone without ../shared/data.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medvault.core.dicom.parse import DicomRejected, dataset_to_part10, parse_instance


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files here")
    with open(path, "rb") as handle:
        return handle.read()


def _reason(data: bytes) -> str:
    with pytest.raises(DicomRejected) as info:
        parse_instance(data)
    return info.value.reason


def _new_uids(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


# --- finding 6: non-image storage classes are accepted without pixels ------------------


@pytest.mark.parametrize("name", ["rtplan.dcm", "waveform_ecg.dcm", "test-SR.dcm", "reportsi.dcm"])
def test_non_image_storage_classes_are_accepted(name: str) -> None:
    parsed = parse_instance(_bundled(name))
    assert parsed.pixels is None and parsed.metadata


def _non_image(sop_class: str) -> bytes:
    """An instance of ``sop_class`` built from the bundled RT Plan (no pixel data)."""
    ds = _new_uids(pydicom.dcmread(io.BytesIO(_bundled("rtplan.dcm"))))
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    return dataset_to_part10(ds)


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
        "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
        "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
        "1.2.840.10008.5.1.4.1.1.9.4.1",  # Basic Voice Audio Waveform
        "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
        "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose (a dose-volume histogram only)
        "1.2.826.0.1.3680043.9.9999.1",  # a private storage class pydicom does not know
    ],
)
def test_storage_classes_without_pixels_are_accepted(sop_class: str) -> None:
    assert parse_instance(_non_image(sop_class)).pixels is None


@pytest.mark.parametrize(
    ("sop_class", "words"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
        ("1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"),
        ("1.2.840.10008.5.1.4.1.1.30", "Parametric Map Storage"),
    ],
)
def test_image_classes_without_pixels_are_refused(sop_class: str, words: str) -> None:
    reason = _reason(_non_image(sop_class))
    assert "Pixel Data" in reason and words in reason


def test_a_class_that_is_not_for_storage_is_refused() -> None:
    reason = _reason(_non_image("1.2.840.10008.1.1"))  # Verification
    assert "not a storage SOP class" in reason and "Verification" in reason


# --- findings 4 and 5: the pixel size rules of each photometric interpretation ----------


def test_ybr_full_422_uncompressed_is_two_bytes_a_pixel() -> None:
    parsed = parse_instance(_bundled("SC_ybr_full_422_uncompressed.dcm"))
    assert parsed.pixels.shape == (1, 100, 100, 3)
    assert parsed.raw_pixel_bytes == 20000


def test_ybr_full_422_too_short_is_refused_with_the_size_it_needs() -> None:
    ds = _new_uids(pydicom.dcmread(io.BytesIO(_bundled("SC_ybr_full_422_uncompressed.dcm"))))
    ds.PixelData = ds.PixelData[:19000]
    reason = _reason(dataset_to_part10(ds))
    assert "holds 19000 bytes" in reason and "needs 20000" in reason and "YBR_FULL_422" in reason


def test_padded_pixel_data_is_accepted_and_the_padding_is_not_pixels() -> None:
    parsed = parse_instance(_bundled("MR_small_padded.dcm"))
    reference = parse_instance(_bundled("MR_small.dcm"))
    assert np.array_equal(parsed.pixels, reference.pixels)
    assert parsed.pixel_sha256 == reference.pixel_sha256
    assert any("padding" in w for w in parsed.warnings)


def test_truncated_pixel_data_is_still_refused() -> None:
    reason = _reason(_bundled("MR_truncated.dcm"))
    assert "holds 8130 bytes" in reason and "needs 8192" in reason


def test_one_bit_pixels_are_sized_packed() -> None:
    parsed = parse_instance(_bundled("liver_1frame.dcm"))
    ds = parsed.dataset
    assert parsed.raw_pixel_bytes == (ds.Rows * ds.Columns + 7) // 8
    assert parsed.pixels.shape == (1, ds.Rows, ds.Columns)


def test_float_pixel_data_is_sized_by_its_keyword() -> None:
    ds = _new_uids(pydicom.dcmread(io.BytesIO(_bundled("MR_small.dcm"))))
    del ds.PixelData
    ds.BitsAllocated = 32
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    values = np.linspace(-1.5, 2.5, 64 * 64, dtype="<f4")
    ds.FloatPixelData = values.tobytes()
    parsed = parse_instance(dataset_to_part10(ds))
    assert np.array_equal(parsed.pixels.reshape(-1), values)
    ds.FloatPixelData = values.tobytes()[:-4]
    assert "needs 16384 bytes" in _reason(dataset_to_part10(ds))


# --- finding 8: reasons name the attribute, never pydicom's exception text -------------


def test_a_bad_value_is_named_by_attribute_not_by_exception_text() -> None:
    reason = _reason(_bundled("badVR.dcm"))
    assert "invalid literal" not in reason and "int()" not in reason
    assert "Number of Frames (0028,0008)" in reason and "'1A'" in reason and "IS" in reason


def test_a_truncated_sequence_is_refused() -> None:
    reason = _reason(_bundled("rtplan_truncated.dcm"))
    assert "truncated" in reason


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_undecodable_pixels_name_the_syntax_not_the_plugin_error(name: str) -> None:
    reason = _reason(_bundled(name))
    assert "Pixel Data" in reason and "transfer syntax" in reason
    assert "plugin" not in reason and "Traceback" not in reason and "exceptions" not in reason
