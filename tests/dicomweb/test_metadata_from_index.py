"""Series metadata comes from the index, never from blobs.

Its speed (a 100-instance series) is measured in bench/versus_orthanc.py, not asserted here.
"""

from __future__ import annotations

import io

import pydicom
import pytest

from medvault.archive.models import Instance

from .ctgen import ct_series
from .helpers import stow


@pytest.mark.django_db
def test_series_metadata_of_100_instances_reads_no_blob(
    blob_dir, no_analysis, client, clinician_a, monkeypatch
) -> None:
    files = ct_series(100, seed=12)
    assert stow(client, clinician_a.headers, files).status_code == 200
    ds = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"

    # Reading a blob during a metadata request is a bug: make it fail loudly.
    import medvault.archive.selectors as archive_selectors

    def no_blobs(**kwargs):  # pragma: no cover - must not be called
        raise AssertionError("metadata read a blob")

    monkeypatch.setattr(archive_selectors, "instance_blob", no_blobs)
    response = client.get(url, **clinician_a.headers)
    assert response.status_code == 200
    metas = response.json()
    assert len(metas) == Instance.objects.count() == 100
    sent = {pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {m["00080018"]["Value"][0] for m in metas} == sent
