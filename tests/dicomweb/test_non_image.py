"""WADO-RS on instances without pixel data (RT plan, ECG, SR): the instance and its metadata
come back; frames, rendered and thumbnails answer 404 in words, never 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medvault.archive.ingest import instance_store

from .conftest import api_user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(blob_dir, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    path = get_testdata_file("rtplan.dcm")
    if path is None:
        pytest.skip("rtplan.dcm is not among pydicom's bundled test files here")
    instance = instance_store(data=Path(path).read_bytes(), source="cli").instance
    return instance, api_user_make("adm", "administrator", None)


@pytest.mark.parametrize(
    ("suffix", "status"),
    [
        ("", 200),
        ("/metadata", 200),
        ("/frames/1", 404),
        ("/rendered", 404),
        ("/thumbnail", 404),
        ("/bulkdata/7FE00010", 404),
        ("@series/thumbnail", 404),
        ("@study/thumbnail", 404),
        ("@study/rendered", 200),
    ],
)
def test_wado_rs_on_an_instance_without_pixels(client, stored, suffix, status):
    instance, user = stored
    study = f"/dicomweb/studies/{instance.series.study.study_instance_uid}"
    series = f"{study}/series/{instance.series.series_instance_uid}"
    if suffix.startswith("@series"):
        url = series + suffix[len("@series") :]
    elif suffix.startswith("@study"):
        url = study + suffix[len("@study") :]
    else:
        url = f"{series}/instances/{instance.sop_instance_uid}{suffix}"
    response = client.get(url, **user.headers)
    assert response.status_code == status
    if response.streaming:
        b"".join(response.streaming_content)
    elif status == 404:
        assert "no pixel data" in response.json()["error"]
