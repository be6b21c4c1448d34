"""The same instance in another transfer syntax is the same instance (issue 16, finding 7).
pydicom's bundled files: no ../shared/data needed."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvault.archive.ingest import instance_store
from medvault.archive.outcomes import StoreStatus
from medvault.core.dicom.parse import dataset_to_part10

pytestmark = pytest.mark.django_db


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files here")
    return Path(path).read_bytes()


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"),
        ("SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd.dcm"),
        ("MR_small.dcm", "MR_small_bigendian.dcm"),
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm"),
    ],
)
def test_another_syntax_is_a_duplicate(blob_dir, first, again):
    assert instance_store(data=_bundled(first), source="cli").status == StoreStatus.STORED
    result = instance_store(data=_bundled(again), source="cli")
    assert result.status == StoreStatus.DUPLICATE, result.reason


def test_other_metadata_in_another_syntax_is_still_a_conflict(blob_dir):
    assert instance_store(data=_bundled("SC_rgb_small_odd.dcm"), source="cli").status == StoreStatus.STORED
    ds = pydicom.dcmread(io.BytesIO(_bundled("SC_rgb_small_odd_big_endian.dcm")))
    ds.PatientName = "Someone^Else"
    result = instance_store(data=dataset_to_part10(ds), source="cli")
    assert result.status == StoreStatus.REJECTED and "PatientName" in result.reason
