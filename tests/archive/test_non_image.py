"""Non-image storage classes (RT, waveforms, SR) go through the one ingest service and come
back byte for byte. pydicom's bundled files: no ../shared/data needed."""

from __future__ import annotations

import pytest
from pydicom.data import get_testdata_file

from medvault.archive.ingest import instance_store
from medvault.archive.outcomes import StoreStatus
from medvault.archive.selectors import instance_part10_bytes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["rtplan.dcm", "waveform_ecg.dcm", "test-SR.dcm"])
def test_non_image_instances_are_stored_and_returned_as_received(blob_dir, name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files here")
    with open(path, "rb") as handle:
        data = handle.read()
    result = instance_store(data=data, source="cli", path=name)
    assert result.status == StoreStatus.STORED, result.reason
    assert result.instance.rows is None and result.instance.raw_pixel_bytes == 0
    assert instance_part10_bytes(instance=result.instance) == data
