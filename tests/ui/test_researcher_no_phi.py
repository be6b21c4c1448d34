"""Issue 13, finding 13: a researcher sees no PHI anywhere (DICOM PS3.15 Annex E Basic
Profile): pages, JSON (QIDO-RS, metadata, analyses), DICOM files (refused: the role table says
no download), thumbnails and rendered images, CSV.

The instance stored here carries PHI in the places the hostile review found it kept:
Occupation, free text (StudyDescription, ImageComments), dates, besides names and IDs.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from django.test import Client
from mvfixtures import PASSWORD, make_user, sample_bytes

SECRETS = ("Secretperson", "MRN-SECRET-7", "Astronaut", "Fell off a ladder", "Secret chest CT",
           "ACC-SECRET", "19610203", "1961-02-03", "20231115", "2023-11-15", "Secret Hospital",
           "Dr^Whoever")


def _phi_instance() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(sample_bytes()))
    ds.PatientName = "Secretperson^Anna"
    ds.PatientID = "MRN-SECRET-7"
    ds.PatientBirthDate = "19610203"
    ds.Occupation = "Astronaut"
    ds.ImageComments = "Fell off a ladder"
    ds.StudyDescription = "Secret chest CT"
    ds.SeriesDescription = "Secret chest CT series"
    ds.AccessionNumber = "ACC-SECRET"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20231115"
    ds.InstitutionName = "Secret Hospital"
    ds.ReferringPhysicianName = "Dr^Whoever"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def phi_ct(blob_dir, group_a, clinician_a):
    from medvault.archive.services import upload_store

    [result] = upload_store(name="phi.dcm", data=_phi_instance(), source="test", user=clinician_a, group=group_a)
    assert result.status == "stored", result.reason
    return result.instance


@pytest.fixture
def researcher(group_a):
    make_user("resq", "researcher", [group_a])
    client = Client()
    assert client.login(username="resq", password=PASSWORD)
    return client


def _text(response) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode("latin-1")


def _assert_clean(what: str, response) -> None:
    text = _text(response)
    found = [s for s in SECRETS if s in text]
    assert not found, f"{what} shows {found}"


@pytest.mark.django_db
def test_researcher_sees_no_phi_on_pages_json_and_images(researcher, phi_ct):
    series = phi_ct.series
    study = series.study
    sop, se, st = phi_ct.sop_instance_uid, series.series_instance_uid, study.study_instance_uid
    dicom_json = "application/dicom+json"
    checks = {
        "home": ("/", {}),
        "studies page": ("/studies/", {}),
        "study page": (f"/studies/{st}/", {}),
        "history": ("/history/", {}),
        "viewer": (f"/viewer/{st}/", {}),
        "metadata panel": (f"/frames/{sop}/info", {}),
        "QIDO studies": ("/dicomweb/studies?includefield=all", {"HTTP_ACCEPT": dicom_json}),
        "QIDO series": (f"/dicomweb/studies/{st}/series?includefield=all", {"HTTP_ACCEPT": dicom_json}),
        "QIDO instances": (f"/dicomweb/studies/{st}/instances?includefield=all", {"HTTP_ACCEPT": dicom_json}),
        "metadata": (f"/dicomweb/studies/{st}/metadata", {"HTTP_ACCEPT": dicom_json}),
        "analyses": ("/api/v1/analyses", {}),
        "series thumbnail": (f"/series/{se}/thumbnail.png", {}),
        "frame": (f"/frames/{sop}/0.png", {}),
        "rendered": (f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/rendered", {}),
        "similar thumbnail": (f"/api/v1/similar/{sop}/thumbnail.png", {}),
    }
    for what, (url, headers) in checks.items():
        response = researcher.get(url, **headers)
        assert response.status_code == 200, (what, response.status_code)
        _assert_clean(what, response)
    metadata = researcher.get(f"/dicomweb/studies/{st}/metadata", HTTP_ACCEPT=dicom_json).json()[0]
    assert metadata["00120062"]["Value"] == ["YES"]
    codes = [item["00080100"]["Value"][0] for item in metadata["00120064"]["Value"]]
    assert "113100" in codes and "113110" in codes and "113106" not in codes


@pytest.mark.django_db
def test_researcher_cannot_search_by_what_is_hidden(researcher, phi_ct):
    """Matching on a removed attribute would reveal it one guess at a time."""
    for params in ({"StudyDate": "20231115"}, {"StudyDescription": "Secret*"}, {"PatientName": "Secret*"}):
        response = researcher.get("/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json")
        assert response.status_code == 200
        assert "matching is not supported" in response.get("Warning", "")
    page = researcher.get("/studies/", {"date_from": "2023-11-16", "description": "nothing-like-it"})
    assert phi_ct.series.study.study_instance_uid in _text(page)


@pytest.mark.django_db
def test_researcher_gets_no_dicom_files_and_no_csv(researcher, phi_ct):
    series = phi_ct.series
    study = series.study
    sop, se, st = phi_ct.sop_instance_uid, series.series_instance_uid, study.study_instance_uid
    for url in (f"/dicomweb/studies/{st}", f"/dicomweb/studies/{st}/series/{se}",
                f"/dicomweb/studies/{st}/series/{se}/instances/{sop}"):
        response = researcher.get(url, HTTP_ACCEPT='multipart/related; type="application/dicom"')
        assert response.status_code == 403, url
    wado_uri = researcher.get("/dicomweb/wado", {
        "requestType": "WADO", "studyUID": st, "seriesUID": se, "objectUID": sop,
        "contentType": "application/dicom"})
    assert wado_uri.status_code == 403
    assert researcher.get(f"/instances/{sop}/download").status_code == 403
    assert researcher.get("/accounts/audit.csv").status_code == 403


@pytest.mark.django_db
def test_retain_dates_option_keeps_dates_and_says_so(researcher, phi_ct, settings):
    settings.MEDVAULT_DEID_RETAIN_DATES = True
    st = phi_ct.series.study.study_instance_uid
    metadata = researcher.get(f"/dicomweb/studies/{st}/metadata", HTTP_ACCEPT="application/dicom+json").json()[0]
    assert metadata["00080020"]["Value"] == ["20231115"]
    assert "113106" in [item["00080100"]["Value"][0] for item in metadata["00120064"]["Value"]]
    assert "Astronaut" not in str(metadata) and "Secretperson" not in str(metadata)
