"""STOW-RS, QIDO-RS, WADO-RS and WADO-URI through Django's test client, on a real database."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from medvault.accounts.models import AuditRecord
from medvault.archive.models import Instance, Study

from .ctgen import ct_series
from .helpers import parts_of, stow, stow_body, value

pytestmark = pytest.mark.django_db

EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def series3(blob_dir, no_analysis, client, clinician_a):
    files = ct_series(3, patient_id="PAT-A1", patient_name="Smith^Alice", seed=1)
    response = stow(client, clinician_a.headers, files)
    assert response.status_code == 200, response.content
    return [pydicom.dcmread(io.BytesIO(f)) for f in files]


def test_stow_stores_and_answers_with_referenced_sops(series3, client, clinician_a) -> None:
    study = Study.objects.get(study_instance_uid=series3[0].StudyInstanceUID)
    assert study.number_of_instances == 3
    assert study.group.name == "radiology-a"
    assert Instance.objects.filter(source="stow").count() == 3
    # Re-sending is harmless: referenced again (with a warning), nothing new stored.
    files = [_bytes(ds) for ds in series3]
    response = stow(client, clinician_a.headers, files)
    assert response.status_code == 200
    body = response.json()
    refs = body["00081199"]["Value"]
    assert {value(r, "00081155") for r in refs} == {ds.SOPInstanceUID for ds in series3}
    assert all(value(r, "00081196") == 0xB000 for r in refs)
    assert Instance.objects.count() == 3
    assert AuditRecord.objects.filter(action="upload", user=clinician_a.user).count() >= 3


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_stow_partial_failure_202_and_all_failed_409(blob_dir, no_analysis, client, clinician_a) -> None:
    good = ct_series(1, seed=2)[0]
    response = stow(client, clinician_a.headers, [good, b"this is not DICOM at all"])
    assert response.status_code == 202
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    failed = body["00081198"]["Value"]
    assert value(failed[0], "00081197") == 0xC000
    assert value(failed[0], "00000902")  # the reason in words

    response = stow(client, clinician_a.headers, [b"garbage", b""])
    assert response.status_code == 409
    assert len(response.json()["00081198"]["Value"]) == 2
    assert Instance.objects.count() == 1


def test_stow_conflicting_resend_and_wrong_study(blob_dir, no_analysis, client, clinician_a) -> None:
    files = ct_series(1, seed=3)
    assert stow(client, clinician_a.headers, files).status_code == 200
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    ds.PatientName = "Changed^Name"
    response = stow(client, clinician_a.headers, [_bytes(ds)])
    assert response.status_code == 409
    assert value(response.json()["00081198"]["Value"][0], "00081197") == 0x0111

    other = ct_series(1, seed=4)
    response = stow(client, clinician_a.headers, other, study="1.2.3.4.5")
    assert response.status_code == 409
    assert value(response.json()["00081198"]["Value"][0], "00081197") == 0xA900


@pytest.mark.parametrize(
    "ctype, body, status",
    [
        ("application/dicom", b"DICM", 415),
        # JSON STOW is supported; a metadata part that is not a JSON array is a bad request.
        ('multipart/related; type="application/dicom+json"; boundary=x', b"--x\r\n\r\n{}\r\n--x--", 400),
        ('multipart/related; type="image/png"; boundary=x', b"--x\r\n\r\n{}\r\n--x--", 415),
        (
            'multipart/related; type="application/dicom"; boundary=x',
            b"--x\r\nContent-Type: application/dicom\r\n\r\nno end",
            400,
        ),
        ('multipart/related; type="application/dicom"', b"--x--", 400),
    ],
)
def test_stow_rejects_bad_requests(db, client, clinician_a, ctype, body, status) -> None:
    response = client.post("/dicomweb/studies", data=body, content_type=ctype, **clinician_a.headers)
    assert response.status_code == status
    assert response.json()["error"]


def test_authentication_and_roles(db, client, clinician_a, researcher_a) -> None:
    response = client.get("/dicomweb/studies")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response
    assert client.get("/dicomweb/studies", HTTP_AUTHORIZATION="Token wrong").status_code == 401
    assert client.get("/dicomweb/studies", HTTP_AUTHORIZATION=clinician_a.basic).status_code == 200
    body, ctype = stow_body(ct_series(1, seed=5))
    response = client.post("/dicomweb/studies", data=body, content_type=ctype, **researcher_a.headers)
    assert response.status_code == 403
    assert Instance.objects.count() == 0


def test_qido_matching(series3, client, clinician_a) -> None:
    def search(url: str, **params: str) -> list[dict]:
        response = client.get(url, params, **clinician_a.headers)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/dicom+json"
        return response.json()

    study_uid = series3[0].StudyInstanceUID
    series_uid = series3[0].SeriesInstanceUID
    (study,) = search("/dicomweb/studies", PatientID="PAT-A1")
    assert value(study, "0020000D") == study_uid
    assert study["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Smith^Alice"}]}
    assert study["00201208"] == {"vr": "IS", "Value": [3]}
    assert study["00080061"]["Value"] == ["CT"]
    assert value(study, "00081190").endswith(f"/dicomweb/studies/{study_uid}")
    assert len(search("/dicomweb/studies", PatientName="smith*")) == 1
    assert len(search("/dicomweb/studies", PatientName="SM?TH^ALICE")) == 1
    assert len(search("/dicomweb/studies", PatientName="alice", fuzzymatching="true")) == 1
    assert search("/dicomweb/studies", PatientName="alice") == []
    assert len(search("/dicomweb/studies", ModalitiesInStudy="CT")) == 1
    assert search("/dicomweb/studies", ModalitiesInStudy="MR") == []
    date = series3[0].StudyDate
    assert len(search("/dicomweb/studies", StudyDate=f"{date}-")) == 1
    assert len(search("/dicomweb/studies", StudyDate=f"-{date}")) == 1
    assert search("/dicomweb/studies", StudyDate="19000101-19000102") == []
    assert len(search("/dicomweb/studies", StudyInstanceUID=f"1.2.3\\{study_uid}")) == 1
    # includefield: a column of the index and an attribute only the metadata holds.
    (study,) = search("/dicomweb/studies", includefield="00080020,StudyDescription,Manufacturer")
    assert value(study, "00080070") == series3[0].Manufacturer
    (series,) = search(f"/dicomweb/studies/{study_uid}/series")
    assert value(series, "0020000E") == series_uid
    assert value(series, "00080060") == "CT"
    assert value(series, "00201209") == 3
    assert len(search("/dicomweb/series", Modality="CT", PatientID="PAT-A1")) == 1
    instances = search(f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances")
    assert [value(i, "00200013") for i in instances] == [1, 2, 3]
    assert len(search("/dicomweb/instances", InstanceNumber="2")) == 1
    assert len(search(f"/dicomweb/studies/{study_uid}/instances", limit="2")) == 2
    page = search(f"/dicomweb/studies/{study_uid}/instances", limit="2", offset="2")
    assert [value(i, "00200013") for i in page] == [3]
    (full,) = search("/dicomweb/instances", InstanceNumber="1", includefield="all")
    assert value(full, "00180050") is not None  # SliceThickness comes from the metadata
    assert "7FE00010" not in full


def test_qido_unsupported_attribute_is_ignored_with_warning(series3, client, clinician_a) -> None:
    response = client.get("/dicomweb/studies", {"Manufacturer": "nobody"}, **clinician_a.headers)
    assert response.status_code == 200
    assert len(response.json()) == 1
    assert "Manufacturer" in response["Warning"]


@pytest.mark.parametrize(
    "url, status",
    [
        ("/dicomweb/studies?StudyDate=2020-13-45", 400),
        ("/dicomweb/studies?limit=-1", 400),
        ("/dicomweb/studies?NoSuchAttribute=1", 400),
        ("/dicomweb/studies?StudyInstanceUID=abc", 400),
        ("/dicomweb/studies/not-a-uid/series", 400),
        ("/dicomweb/studies/1.2.3.4/series", 404),
        ("/dicomweb/studies/1.2.3.4", 404),
        ("/dicomweb/studies/1.2.3.4/metadata", 404),
        ("/dicomweb/studies/1.2.x/metadata", 400),
    ],
)
def test_qido_and_wado_errors(db, client, clinician_a, url, status) -> None:
    response = client.get(url, **clinician_a.headers)
    assert response.status_code == status
    assert response.json()["error"]


def test_other_groups_studies_are_invisible(series3, client, clinician_b) -> None:
    study_uid = series3[0].StudyInstanceUID
    series_uid = series3[0].SeriesInstanceUID
    sop = series3[0].SOPInstanceUID
    assert client.get("/dicomweb/studies", **clinician_b.headers).json() == []
    assert client.get("/dicomweb/instances", **clinician_b.headers).json() == []
    base = f"/dicomweb/studies/{study_uid}"
    for url in (base, base + "/metadata", base + "/series", f"{base}/series/{series_uid}",
                f"{base}/series/{series_uid}/instances/{sop}/frames/1",
                f"{base}/series/{series_uid}/instances/{sop}/rendered",
                f"/dicomweb/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID={sop}"):
        assert client.get(url, **clinician_b.headers).status_code == 404, url
    # Storing into someone else's study UID is refused too (the study stays theirs).
    assert AuditRecord.objects.filter(user=clinician_b.user).exists()


def test_wado_rs_retrieve_negotiates_transfer_syntax(series3, client, clinician_a) -> None:
    ds0 = series3[0]
    url = f"/dicomweb/studies/{ds0.StudyInstanceUID}/series/{ds0.SeriesInstanceUID}"
    stored = client.get(url, HTTP_ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*',
                        **clinician_a.headers)
    assert stored.status_code == 200
    stored_parts = [pydicom.dcmread(io.BytesIO(p)) for p in parts_of(stored)]
    stored_syntax = Instance.objects.first().transfer_syntax_uid
    assert {str(p.file_meta.TransferSyntaxUID) for p in stored_parts} == {stored_syntax}
    plain = client.get(url, HTTP_ACCEPT='multipart/related; type="application/dicom"', **clinician_a.headers)
    plain_parts = [pydicom.dcmread(io.BytesIO(p)) for p in parts_of(plain)]
    assert {str(p.file_meta.TransferSyntaxUID) for p in plain_parts} == {EXPLICIT_LE}
    by_uid = {ds.SOPInstanceUID: ds for ds in series3}
    for got in stored_parts + plain_parts:
        original = by_uid[got.SOPInstanceUID]
        assert np.array_equal(got.pixel_array, original.pixel_array)
        assert got.PatientName == original.PatientName
    refused = client.get(
        url,
        HTTP_ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
        **clinician_a.headers,
    )
    assert refused.status_code == 406
    assert client.get(url, HTTP_ACCEPT="text/html", **clinician_a.headers).status_code == 406
    assert AuditRecord.objects.filter(action="download", study_uid=ds0.StudyInstanceUID).exists()


def test_wado_rs_metadata_frames_bulkdata(series3, client, clinician_a) -> None:
    ds0 = series3[0]
    base = f"/dicomweb/studies/{ds0.StudyInstanceUID}/series/{ds0.SeriesInstanceUID}"
    response = client.get(base + "/metadata", **clinician_a.headers)
    assert response.status_code == 200
    metas = response.json()
    assert len(metas) == 3
    meta = next(m for m in metas if value(m, "00080018") == ds0.SOPInstanceUID)
    expected = ds0.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "x")
    for tag, element in expected.items():
        if "BulkDataURI" in element or tag.startswith("0002") or tag == "FFFCFFFC":
            continue
        assert meta[tag].get("Value") == element.get("Value"), tag
    pixel_uri = meta["7FE00010"]["BulkDataURI"]
    assert pixel_uri.endswith(f"/instances/{ds0.SOPInstanceUID}/bulkdata/7FE00010")
    assert pixel_uri.startswith("http")

    inst = f"{base}/instances/{ds0.SOPInstanceUID}"
    frames = client.get(inst + "/frames/1", HTTP_ACCEPT='multipart/related; type="application/octet-stream"',
                        **clinician_a.headers)
    assert frames.status_code == 200
    (frame,) = parts_of(frames)
    assert frame == ds0.pixel_array.astype("<i2" if ds0.PixelRepresentation else "<u2").tobytes()
    assert client.get(inst + "/frames/2", **clinician_a.headers).status_code == 404
    assert client.get(inst + "/frames/x", **clinician_a.headers).status_code == 400
    bulk = client.get(inst + "/bulkdata/7FE00010", **clinician_a.headers)
    assert parts_of(bulk) == [frame]
    one = client.get(inst + "/metadata", **clinician_a.headers).json()
    assert len(one) == 1 and value(one[0], "00080018") == ds0.SOPInstanceUID


def test_rendered_thumbnail_and_wado_uri(series3, client, clinician_a) -> None:
    ds0 = series3[0]
    inst = (f"/dicomweb/studies/{ds0.StudyInstanceUID}/series/{ds0.SeriesInstanceUID}"
            f"/instances/{ds0.SOPInstanceUID}")
    png = client.get(inst + "/rendered", {"window": "40,400", "viewport": "64,64"},
                     HTTP_ACCEPT="image/png", **clinician_a.headers)
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (64, 64)
    narrow = client.get(inst + "/rendered", {"window": "0,10"}, HTTP_ACCEPT="image/png", **clinician_a.headers)
    wide = client.get(inst + "/rendered", {"window": "0,4000"}, HTTP_ACCEPT="image/png", **clinician_a.headers)
    assert (
        np.asarray(Image.open(io.BytesIO(narrow.content))).std()
        > np.asarray(Image.open(io.BytesIO(wide.content))).std()
    )
    jpeg = client.get(inst + "/frames/1/rendered", **clinician_a.headers)
    assert jpeg["Content-Type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    thumb = client.get(inst + "/thumbnail", **clinician_a.headers)
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    series_thumb = client.get(f"/dicomweb/studies/{ds0.StudyInstanceUID}/thumbnail", **clinician_a.headers)
    assert series_thumb.status_code == 200
    assert client.get(inst + "/rendered", {"window": "40"}, **clinician_a.headers).status_code == 400
    assert client.get(inst + "/rendered", HTTP_ACCEPT="image/gif", **clinician_a.headers).status_code == 406

    wado = "/dicomweb/wado"
    params = {"requestType": "WADO", "studyUID": ds0.StudyInstanceUID,
              "seriesUID": ds0.SeriesInstanceUID, "objectUID": ds0.SOPInstanceUID}
    response = client.get(wado, {**params, "contentType": "application/dicom",
                                 "transferSyntax": EXPLICIT_LE}, **clinician_a.headers)
    assert response["Content-Type"] == "application/dicom"
    got = pydicom.dcmread(io.BytesIO(response.content))
    assert np.array_equal(got.pixel_array, ds0.pixel_array)
    response = client.get(wado, params, **clinician_a.headers)
    assert response["Content-Type"] == "image/jpeg"
    assert client.get(wado, {**params, "requestType": "X"}, **clinician_a.headers).status_code == 400
    assert client.get(wado, {"requestType": "WADO"}, **clinician_a.headers).status_code == 400


def test_researchers_get_deidentified_output(series3, client, groups, researcher_a) -> None:
    ds0 = series3[0]
    (study,) = client.get("/dicomweb/studies", **researcher_a.headers).json()
    text = json.dumps(study)
    assert "Smith" not in text and "PAT-A1" not in text
    # Matching on identifying attributes is ignored, so it cannot be used as an oracle.
    response = client.get("/dicomweb/studies", {"PatientName": "nobody"}, **researcher_a.headers)
    assert len(response.json()) == 1
    metas = client.get(f"/dicomweb/studies/{ds0.StudyInstanceUID}/metadata", **researcher_a.headers).json()
    assert "Smith" not in json.dumps(metas) and "PAT-A1" not in json.dumps(metas)
    # The role table says researchers download no DICOM (issue 13): WADO-RS refuses them.
    retrieved = client.get(
        f"/dicomweb/studies/{ds0.StudyInstanceUID}/series/{ds0.SeriesInstanceUID}/instances/{ds0.SOPInstanceUID}",
        **researcher_a.headers,
    )
    assert retrieved.status_code == 403
