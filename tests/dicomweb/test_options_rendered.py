"""OPTIONS on DICOMweb resources, and rendered series and studies (PS3.18 8.9, 10.4)."""

from __future__ import annotations

import io

import pydicom
import pytest
from PIL import Image

from .ctgen import ct_series
from .helpers import parts_of, stow

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(blob_dir, no_analysis, client, clinician_a):
    files = ct_series(3, patient_id="PAT-R1", patient_name="Render^Ren", seed=4)
    assert stow(client, clinician_a.headers, files).status_code == 200
    return pydicom.dcmread(io.BytesIO(files[0]))


def test_options_names_the_methods_of_each_resource(stored, client) -> None:
    studies = client.options("/dicomweb/studies")
    assert studies.status_code == 200
    assert studies["Allow"] == "GET, POST, OPTIONS"
    assert "application/dicom" in studies["Accept-Post"]
    series = client.options(f"/dicomweb/studies/{stored.StudyInstanceUID}/series/"
                            f"{stored.SeriesInstanceUID}/rendered")
    assert series.status_code == 200 and series["Allow"] == "GET, OPTIONS"
    assert not series.has_header("Accept-Post")
    # Other methods are still refused with 405 and the same list.
    assert client.delete("/dicomweb/series").status_code == 405


def test_rendered_series_and_study_give_one_image_per_frame(stored, client, clinician_a) -> None:
    base = f"/dicomweb/studies/{stored.StudyInstanceUID}"
    series = client.get(f"{base}/series/{stored.SeriesInstanceUID}/rendered", {"viewport": "32,32"},
                        HTTP_ACCEPT='multipart/related; type="image/png"', **clinician_a.headers)
    assert series.status_code == 200
    assert series["Content-Type"].startswith("multipart/related") and "image/png" in series["Content-Type"]
    images = parts_of(series)
    assert len(images) == 3
    assert all(Image.open(io.BytesIO(p)).size == (32, 32) for p in images)
    study = client.get(f"{base}/rendered", **clinician_a.headers)
    assert study.status_code == 200 and "image/jpeg" in study["Content-Type"]
    assert [p[:2] for p in parts_of(study)] == [b"\xff\xd8"] * 3


def test_rendered_series_errors(stored, client, clinician_a, clinician_b) -> None:
    base = f"/dicomweb/studies/{stored.StudyInstanceUID}"
    url = f"{base}/series/{stored.SeriesInstanceUID}/rendered"
    assert client.get(url, HTTP_ACCEPT="application/dicom", **clinician_a.headers).status_code == 406
    assert client.get(url, {"window": "abc"}, **clinician_a.headers).status_code == 400
    assert client.get(url, **clinician_b.headers).status_code == 404  # another group's study
    assert client.get(f"{base}/series/1.2.3.4/rendered", **clinician_a.headers).status_code == 404
    assert client.get("/dicomweb/studies/not-a-uid/rendered", **clinician_a.headers).status_code == 400
    assert client.get(url).status_code == 401
