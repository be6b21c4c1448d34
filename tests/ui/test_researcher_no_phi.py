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


FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.4242.1"
REFERENCED_SOP = "1.2.826.0.1.3680043.8.498.4242.2"


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
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = REFERENCED_SOP
    ds.ReferencedImageSequence = [ref]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def phi_ct(blob_dir, group_a, clinician_a):
    from medvault.archive.uploads import upload_store

    [result] = upload_store(name="phi.dcm", data=_phi_instance(), source="test", user=clinician_a, group=group_a)
    assert result.status == "stored", result.reason
    return result.instance


@pytest.fixture
def researcher(group_a):
    make_user("resq", "researcher", [group_a])
    client = Client()
    assert client.login(username="resq", password=PASSWORD)
    return client


DICOM_JSON = "application/dicom+json"


def _originals(instance) -> tuple[str, ...]:
    series = instance.series
    return (series.study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid,
            FRAME_OF_REFERENCE, REFERENCED_SOP)


@pytest.fixture
def addresses(researcher, phi_ct):
    """(study, series, instance) UIDs as a researcher learns them: from QIDO-RS."""
    [study] = researcher.get("/dicomweb/studies", HTTP_ACCEPT=DICOM_JSON).json()
    st = study["0020000D"]["Value"][0]
    [series] = researcher.get(f"/dicomweb/studies/{st}/series", HTTP_ACCEPT=DICOM_JSON).json()
    se = series["0020000E"]["Value"][0]
    [instance] = researcher.get(f"/dicomweb/studies/{st}/series/{se}/instances", HTTP_ACCEPT=DICOM_JSON).json()
    return st, se, instance["00080018"]["Value"][0]


def _text(response) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode("latin-1")


def _assert_clean(what: str, response) -> None:
    text = _text(response)
    found = [s for s in SECRETS if s in text]
    assert not found, f"{what} shows {found}"


def _checks(st: str, se: str, sop: str) -> dict[str, tuple[str, dict]]:
    return {
        "home": ("/", {}),
        "studies page": ("/studies/", {}),
        "study page": (f"/studies/{st}/", {}),
        "history": ("/history/", {}),
        "viewer": (f"/viewer/{st}/", {}),
        "metadata panel": (f"/frames/{sop}/info", {}),
        "QIDO studies": ("/dicomweb/studies?includefield=all", {"HTTP_ACCEPT": DICOM_JSON}),
        "QIDO series": (f"/dicomweb/studies/{st}/series?includefield=all", {"HTTP_ACCEPT": DICOM_JSON}),
        "QIDO instances": (f"/dicomweb/studies/{st}/instances?includefield=all", {"HTTP_ACCEPT": DICOM_JSON}),
        "QIDO all series": ("/dicomweb/series?includefield=all", {"HTTP_ACCEPT": DICOM_JSON}),
        "QIDO all instances": ("/dicomweb/instances?includefield=all", {"HTTP_ACCEPT": DICOM_JSON}),
        "metadata": (f"/dicomweb/studies/{st}/metadata", {"HTTP_ACCEPT": DICOM_JSON}),
        "series metadata": (f"/dicomweb/studies/{st}/series/{se}/metadata", {"HTTP_ACCEPT": DICOM_JSON}),
        "instance metadata": (f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/metadata",
                              {"HTTP_ACCEPT": DICOM_JSON}),
        "analyses": ("/api/v1/analyses", {}),
        "similar page": (f"/similar/{sop}/", {}),
        "series thumbnail": (f"/series/{se}/thumbnail.png", {}),
        "frame": (f"/frames/{sop}/0.png", {}),
        "rendered": (f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/rendered", {}),
        "similar thumbnail": (f"/api/v1/similar/{sop}/thumbnail.png", {}),
    }


@pytest.mark.django_db
def test_researcher_sees_no_phi_on_pages_json_and_images(researcher, phi_ct, addresses):
    """No PHI and no original UID anywhere; every page and image opens by its pseudonym."""
    originals = _originals(phi_ct)
    for what, (url, headers) in _checks(*addresses).items():
        response = researcher.get(url, **headers)
        assert response.status_code == 200, (what, response.status_code)
        _assert_clean(what, response)
        text = _text(response)
        shown = [uid for uid in originals if uid in text or uid in response.get("Location", "")]
        assert not shown, f"{what} shows the original UIDs {shown}"
    st = addresses[0]
    metadata = researcher.get(f"/dicomweb/studies/{st}/metadata", HTTP_ACCEPT=DICOM_JSON).json()[0]
    assert metadata["00120062"]["Value"] == ["YES"]
    codes = [item["00080100"]["Value"][0] for item in metadata["00120064"]["Value"]]
    # Basic Profile, UIDs replaced: no Retain UIDs Option (113110).
    assert "113100" in codes and "113110" not in codes and "113106" not in codes
    assert "Retain UIDs" not in str(metadata)


@pytest.mark.django_db
def test_researcher_uids_are_consistent_pseudonyms(researcher, phi_ct, addresses):
    from medvault.accounts.deid import uid_pseudonym

    st, se, sop = addresses
    series = phi_ct.series
    originals = (series.study.study_instance_uid, series.series_instance_uid, phi_ct.sop_instance_uid)
    assert (st, se, sop) == tuple(uid_pseudonym(uid) for uid in originals)
    assert all(p.startswith("2.25.") and len(p) <= 64 for p in (st, se, sop))
    assert not set(addresses) & set(originals)
    # The same across requests, and between QIDO, metadata and pages.
    again = researcher.get("/dicomweb/studies", HTTP_ACCEPT=DICOM_JSON).json()[0]["0020000D"]["Value"][0]
    assert again == st
    [meta] = researcher.get(f"/dicomweb/studies/{st}/metadata", HTTP_ACCEPT=DICOM_JSON).json()
    assert (meta["0020000D"]["Value"][0], meta["0020000E"]["Value"][0], meta["00080018"]["Value"][0]) == addresses
    frame_of_reference = meta["00200052"]["Value"][0]
    assert frame_of_reference == uid_pseudonym(FRAME_OF_REFERENCE)
    referenced = meta["00081140"]["Value"][0]["00081155"]["Value"][0]
    assert referenced == uid_pseudonym(REFERENCED_SOP)
    # Class UIDs are kept (PS3.15 E: they identify no one).
    assert meta["00080016"]["Value"][0] == phi_ct.sop_class_uid
    for page in (f"/studies/{st}/", "/studies/", f"/viewer/{st}/"):
        assert st in _text(researcher.get(page)), page
    assert sop in _text(researcher.get(f"/viewer/{st}/"))
    # A second researcher of the group sees the same pseudonyms.
    make_user("resq2", "researcher", [phi_ct.series.study.group])
    other = Client()
    assert other.login(username="resq2", password=PASSWORD)
    assert other.get("/dicomweb/studies", HTTP_ACCEPT=DICOM_JSON).json()[0]["0020000D"]["Value"][0] == st


@pytest.mark.django_db
def test_researcher_cannot_use_original_uids(researcher, phi_ct, addresses):
    """Originals name nothing for a researcher: the pseudonym is the only address."""
    originals = _originals(phi_ct)
    st, se, sop = originals[:3]
    for what, (url, headers) in _checks(st, se, sop).items():
        if st not in url and se not in url and sop not in url:
            continue
        response = researcher.get(url, **headers)
        assert response.status_code in (400, 404), (what, response.status_code)
        text = _text(response)
        assert not [uid for uid in originals if uid in text], what
    found = researcher.get("/dicomweb/studies", {"StudyInstanceUID": st}, HTTP_ACCEPT=DICOM_JSON)
    assert found.status_code == 204 or found.json() == []
    found = researcher.get("/dicomweb/studies", {"StudyInstanceUID": addresses[0]}, HTTP_ACCEPT=DICOM_JSON)
    assert [item["0020000D"]["Value"][0] for item in found.json()] == [addresses[0]]


@pytest.mark.django_db
def test_researcher_pseudonyms_resolve_under_the_same_permissions(researcher, phi_ct, addresses, group_b):
    """A pseudonym opens only what the researcher may see: a researcher of another group gets 404."""
    make_user("resb", "researcher", [group_b])
    other = Client()
    assert other.login(username="resb", password=PASSWORD)
    st, se, sop = addresses
    for url in (f"/studies/{st}/", f"/viewer/{st}/", f"/dicomweb/studies/{st}/metadata",
                f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/rendered", f"/frames/{sop}/0.png"):
        response = other.get(url)
        assert response.status_code == 404, url
        assert not [uid for uid in _originals(phi_ct) if uid in _text(response)], url


@pytest.mark.django_db
def test_clinicians_still_see_original_uids(clinician_a, phi_ct, addresses):
    client = Client()
    assert client.login(username=clinician_a.username, password=PASSWORD)
    st = phi_ct.series.study.study_instance_uid
    assert client.get("/dicomweb/studies", HTTP_ACCEPT=DICOM_JSON).json()[0]["0020000D"]["Value"][0] == st
    assert client.get(f"/studies/{st}/").status_code == 200
    assert client.get(f"/studies/{addresses[0]}/").status_code == 404


@pytest.mark.django_db
def test_researcher_token_client_gets_pseudonyms(phi_ct, researcher, addresses):
    """A DICOMweb client with an API token is treated like the browser session."""
    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create

    _, key = token_create(user=User.objects.get(username="resq"), name="qido")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    [study] = client.get("/dicomweb/studies", HTTP_ACCEPT=DICOM_JSON).json()
    assert study["0020000D"]["Value"][0] == addresses[0]
    st, se, sop = addresses
    response = client.get(f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/metadata", HTTP_ACCEPT=DICOM_JSON)
    assert response.status_code == 200
    assert phi_ct.sop_instance_uid not in response.content.decode()


@pytest.mark.django_db
def test_researcher_cannot_search_by_what_is_hidden(researcher, phi_ct):
    """Matching on a removed attribute would reveal it one guess at a time."""
    for params in ({"StudyDate": "20231115"}, {"StudyDescription": "Secret*"}, {"PatientName": "Secret*"}):
        response = researcher.get("/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json")
        assert response.status_code == 200
        assert "matching is not supported" in response.get("Warning", "")
    page = researcher.get("/studies/", {"date_from": "2023-11-16", "description": "nothing-like-it"})
    from medvault.accounts.deid import uid_pseudonym

    assert uid_pseudonym(phi_ct.series.study.study_instance_uid) in _text(page)


@pytest.mark.django_db
def test_researcher_gets_no_dicom_files_and_no_csv(researcher, phi_ct, addresses):
    st, se, sop = addresses
    for url in (f"/dicomweb/studies/{st}", f"/dicomweb/studies/{st}/series/{se}",
                f"/dicomweb/studies/{st}/series/{se}/instances/{sop}"):
        response = researcher.get(url, HTTP_ACCEPT='multipart/related; type="application/dicom"')
        assert response.status_code == 403, url
    wado_uri = researcher.get("/dicomweb/wado", {
        "requestType": "WADO", "studyUID": st, "seriesUID": se, "objectUID": sop,
        "contentType": "application/dicom"})
    assert wado_uri.status_code == 403
    jpeg = researcher.get("/dicomweb/wado", {
        "requestType": "WADO", "studyUID": st, "seriesUID": se, "objectUID": sop, "contentType": "image/jpeg"})
    assert jpeg.status_code == 200 and jpeg["Content-Type"] == "image/jpeg"
    assert researcher.get(f"/instances/{sop}/download").status_code == 403
    assert researcher.get("/accounts/audit.csv").status_code == 403


@pytest.mark.django_db
def test_retain_dates_option_keeps_dates_and_says_so(researcher, phi_ct, addresses, settings):
    settings.MEDVAULT_DEID_RETAIN_DATES = True
    st = addresses[0]
    metadata = researcher.get(f"/dicomweb/studies/{st}/metadata", HTTP_ACCEPT="application/dicom+json").json()[0]
    assert metadata["00080020"]["Value"] == ["20231115"]
    assert "113106" in [item["00080100"]["Value"][0] for item in metadata["00120064"]["Value"]]
    assert "Astronaut" not in str(metadata) and "Secretperson" not in str(metadata)


def test_deidentified_dataset_has_pseudonymous_uids_and_declares_the_basic_profile(settings):
    """The same replacement on a pydicom Dataset: instance UIDs replaced, class UIDs kept."""
    from medvault.accounts.deid import deidentify_dataset, uid_pseudonym

    settings.MEDVAULT_DEID_UID_KEY = "test-key"
    original = pydicom.dcmread(io.BytesIO(_phi_instance()))
    ds = deidentify_dataset(original)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert ds[keyword].value == uid_pseudonym(original[keyword].value), keyword
        assert ds[keyword].value != original[keyword].value and ds[keyword].value.startswith("2.25.")
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == uid_pseudonym(REFERENCED_SOP)
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == original.SOPClassUID
    assert ds.SOPClassUID == original.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]
    # Another key gives other pseudonyms (unlinkable without the key).
    settings.MEDVAULT_DEID_UID_KEY = "another-key"
    assert uid_pseudonym(original.StudyInstanceUID) != ds.StudyInstanceUID


@pytest.mark.django_db
def test_researcher_redirects_name_only_pseudonyms(researcher, phi_ct, addresses):
    """CommonMiddleware's slash redirect runs outside the pseudonym middleware: still no original."""
    st = addresses[0]
    response = researcher.get(f"/studies/{st}", {"from": st})
    assert response.status_code == 301
    assert response["Location"] == f"/studies/{st}/?from={st}"
    assert phi_ct.series.study.study_instance_uid not in response["Location"]
