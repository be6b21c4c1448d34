"""Smoke test of the archive contract on real data."""

from __future__ import annotations

import numpy as np
import pytest

from medvault.archive import selectors
from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance, Study


@pytest.mark.django_db
def test_store_and_read_back_ct(dicom_data, blob_dir, compression_inline):
    data = (dicom_data / "dicom/single_ct/CT_small.dcm").read_bytes()
    result = instance_store(data=data, source="cli", path="CT_small.dcm")
    assert result.status == "stored", result.reason
    inst = result.instance
    assert inst.transfer_syntax_uid == "1.2.840.10008.1.2.4.80"
    assert inst.stored_bytes < inst.received_bytes
    again = instance_store(data=data, source="cli")
    assert again.status == "duplicate"
    assert Instance.objects.count() == 1
    study = Study.objects.get()
    assert (study.number_of_instances, study.number_of_series, study.modalities_in_study) == (1, 1, "CT")
    import io

    import pydicom
    original = pydicom.dcmread(io.BytesIO(data)).pixel_array
    assert np.array_equal(selectors.instance_pixels(instance=inst), original)
    ds = selectors.instance_dataset(instance=inst, transfer_syntax_uid="1.2.840.10008.1.2.1")
    assert np.array_equal(ds.pixel_array, original)
    assert "7FE00010" in inst.metadata and "InlineBinary" not in inst.metadata["7FE00010"]
