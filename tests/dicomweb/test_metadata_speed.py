"""Series metadata comes from the index, never from blobs: 100 instances in under 100 ms."""

from __future__ import annotations

import io
import time

import pydicom
import pytest

from medvault.archive.models import Instance

from .ctgen import ct_series
from .helpers import stow


@pytest.mark.django_db
def test_series_metadata_100_instances_fast_and_blob_free(blob_dir, no_analysis, client, clinician_a, monkeypatch) -> None:
    files = ct_series(100, seed=12)
    assert stow(client, clinician_a.headers, files).status_code == 200
    ds = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"

    # Reading a blob during a metadata request is a bug: make it fail loudly.
    import medvault.archive.selectors as archive_selectors

    def no_blobs(**kwargs):  # pragma: no cover - must not be called
        raise AssertionError("metadata read a blob")

    monkeypatch.setattr(archive_selectors, "instance_blob", no_blobs)
    client.get(url, **clinician_a.headers)
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        response = client.get(url, **clinician_a.headers)
        timings.append(time.perf_counter() - start)
        assert response.status_code == 200
    metas = response.json()
    assert len(metas) == Instance.objects.count() == 100
    assert min(timings) < 0.100, timings
