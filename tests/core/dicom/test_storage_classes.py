"""Which objects parse: every storage SOP class, the pixel size rules, and reasons in words.

Uses pydicom's bundled test files, so it runs in a fresh clone without ../shared/data.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

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


@pytest.mark.parametrize(
    "name", ["rtplan.dcm", "waveform_ecg.dcm", "test-SR.dcm", "reportsi.dcm"]
)
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
