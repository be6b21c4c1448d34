"""Web pages: upload, search, study page, viewer frames, history, sharing, errors."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from mvfixtures import PASSWORD, make_study, make_user, png_bytes, sample_bytes

from medvault.accounts.models import AuditRecord


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.mark.django_db
def test_landing_page_explains_and_offers_login_and_register(client):
    page = client.get("/").content.decode()
    assert "MedVault" in page and "/accounts/login/" in page and "/accounts/register/" in page


@pytest.mark.django_db
def test_upload_dicom_png_and_duplicate(blob_dir, group_a, clinician_a):
    client = login(clinician_a)
    assert client.get("/upload/").status_code == 200
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes()), "group": group_a.pk})
    assert r.status_code == 200, r.content
    assert [x["status"] for x in r.json()["results"]] == ["stored"]
    again = client.post("/upload/file", {"file": SimpleUploadedFile("copy.dcm", sample_bytes()), "group": group_a.pk})
    assert [x["status"] for x in again.json()["results"]] == ["duplicate"]
    # PNG without patient fields: refused with the reason; with them: stored.
    r = client.post("/upload/file", {"file": SimpleUploadedFile("x.png", png_bytes()), "group": group_a.pk})
    assert r.status_code == 400 and "patient ID" in r.json()["error"]
    r = client.post("/upload/file", {"file": SimpleUploadedFile("x.png", png_bytes()), "group": group_a.pk,
                                     "patient_id": "SYN-1", "patient_name": "Synthetic^Sam", "modality": "CT",
                                     "body_part": "CHEST"})
    assert [x["status"] for x in r.json()["results"]] == ["stored"], r.content
    garbage = client.post(
        "/upload/file", {"file": SimpleUploadedFile("bad.dcm", b"not dicom at all"), "group": group_a.pk}
    )
    [rej] = garbage.json()["results"]
    assert rej["status"] == "rejected" and rej["reason"]
    outcomes = list(AuditRecord.objects.filter(action="upload").order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["ok", "ok", "ok", "error"]


@pytest.mark.django_db
def test_upload_into_foreign_group_is_refused(blob_dir, group_a, group_b, clinician_a):
    client = login(clinician_a)
    make_user("other", "clinician", [group_b])
    clinician_a.groups.add(group_b)
    clinician_a.groups.remove(group_b)
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes()), "group": group_b.pk})
    # Not a member of B: refused (the one rule of every door, permissions.ingest_group), and
    # never quietly stored into A instead of the group that was named.
    assert r.status_code == 400
    from medvault.archive.models import Study

    assert not Study.objects.exists()


@pytest.mark.django_db
def test_researcher_cannot_upload(blob_dir, researcher_a, group_a):
    client = login(researcher_a)
    assert client.get("/upload/").status_code == 403
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes()), "group": group_a.pk})
    assert r.status_code == 403
    assert AuditRecord.objects.filter(action="upload", outcome="denied").count() == 2


@pytest.mark.django_db
def test_search_filters_wildcards_sort_and_audit(group_a, clinician_a):
    make_study(
        group_a,
        patient_id="P1",
        patient_name="Doe^Jane",
        modality="CT",
        description="Chest CT",
        accession="A1",
        study_date="2024-01-05",
    )
    make_study(
        group_a,
        patient_id="P2",
        patient_name="Doeman^John",
        modality="MR",
        description="Brain MR",
        accession="A2",
        study_date="2024-02-10",
    )
    make_study(
        group_a,
        patient_id="P3",
        patient_name="Smith^Ann",
        modality="CT",
        description="Abdomen",
        accession="A3",
        study_date="2023-12-01",
    )
    client = login(clinician_a)

    def names(**params):
        page = client.get("/studies/", params).content.decode()
        return [n for n in ("Doe, Jane", "Doeman, John", "Smith, Ann") if n in page]

    assert names(patient_name="doe*") == ["Doe, Jane", "Doeman, John"]
    assert names(patient_name="DOE^JANE") == ["Doe, Jane"]
    assert names(patient_name="doe jane") == ["Doe, Jane"]
    assert names(patient_name="d?e*") == ["Doe, Jane", "Doeman, John"]
    assert names(patient_id="P3") == ["Smith, Ann"]
    assert names(accession="A2") == ["Doeman, John"]
    assert names(modality="ct") == ["Doe, Jane", "Smith, Ann"]
    assert names(date_from="2024-01-01", date_to="2024-01-31") == ["Doe, Jane"]
    assert names(description="brain") == ["Doeman, John"]
    page = client.get("/studies/", {"sort": "date"}).content.decode()
    assert page.index("Smith, Ann") < page.index("Doe, Jane") < page.index("Doeman, John")
    page = client.get("/studies/", {"sort": "-date"}).content.decode()
    assert page.index("Doeman, John") < page.index("Doe, Jane") < page.index("Smith, Ann")
    assert AuditRecord.objects.filter(action="search", username="cla").count() == 11


@pytest.mark.django_db
def test_search_is_paginated(group_a, clinician_a):
    for i in range(30):
        make_study(group_a, patient_name=f"Many^P{i:02d}")
    client = login(clinician_a)
    first = client.get("/studies/").content.decode()
    assert "page 1 of 2" in first and "30 studies" in first
    second = client.get("/studies/", {"page": 2}).content.decode()
    assert "page 2 of 2" in second


@pytest.mark.django_db
def test_study_page_viewer_and_frames(stored_ct, clinician_a):
    client = login(clinician_a)
    study = stored_ct.series.study
    series = stored_ct.series
    page = client.get(f"/studies/{study.study_instance_uid}/")
    assert page.status_code == 200 and series.series_instance_uid in page.content.decode()
    thumb = client.get(f"/series/{series.series_instance_uid}/thumbnail.png")
    assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
    viewer = client.get(f"/viewer/{study.study_instance_uid}/")
    assert viewer.status_code == 200
    config = json.loads(
        viewer.content.decode().split('id="viewer-config" type="application/json">')[1].split("</script>")[0]
    )
    assert config["frames"][0]["uid"] == stored_ct.sop_instance_uid and "lung" in config["presets"]
    frame = client.get(f"/frames/{stored_ct.sop_instance_uid}/0.png")
    assert frame.status_code == 200 and frame.content[:4] == b"\x89PNG"
    assert frame["X-Window"]
    lung = client.get(f"/frames/{stored_ct.sop_instance_uid}/0.png", {"wc": -600, "ww": 1500})
    assert lung.content != frame.content and lung["X-Window"] == "-600,1500"
    assert client.get(f"/frames/{stored_ct.sop_instance_uid}/5.png").status_code == 404
    info = client.get(f"/frames/{stored_ct.sop_instance_uid}/info").json()
    keywords = {row[1] for row in info["metadata"]}
    assert {"PatientName", "Modality", "Rows"} <= keywords
    # Views are audited; repeated frame requests are recorded once per instance.
    views = AuditRecord.objects.filter(action="view", username="cla", outcome="ok")
    assert views.filter(sop_uid=stored_ct.sop_instance_uid).count() == 1  # frames + metadata: once
    assert views.filter(sop_uid="", series_uid=series.series_instance_uid).exists()
    download = client.get(f"/instances/{stored_ct.sop_instance_uid}/download")
    assert download.status_code == 200 and download.content[128:132] == b"DICM"
    assert AuditRecord.objects.filter(action="download", sop_uid=stored_ct.sop_instance_uid).exists()


@pytest.mark.django_db
def test_512_frame_renders_at_full_size_with_each_window(stored_ct, clinician_a):
    """A 512x512 frame renders as a 512x512 PNG, and each window gives its own image.

    Speed is measured in bench/viewer_render.py, not asserted here.
    """
    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medvault.archive.uploads import upload_store

    ds = dcmread(__import__("io").BytesIO(sample_bytes()))
    big = np.kron(ds.pixel_array, np.ones((4, 4), dtype=ds.pixel_array.dtype))
    ds.PixelData = big.tobytes()
    ds.Rows, ds.Columns = big.shape
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = __import__("io").BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    [res] = upload_store(
        name="big.dcm", data=buffer.getvalue(), source="test", user=clinician_a, group=stored_ct.series.study.group
    )
    assert res.status == "stored", res.reason
    client = login(clinician_a)
    url = f"/frames/{res.sop_instance_uid}/0.png"
    from PIL import Image

    rendered = []
    for center, width in ((40, 400), (-600, 1500)):
        r = client.get(url, {"wc": center, "ww": width})
        assert r.status_code == 200
        assert r["Content-Type"] == "image/png"
        image = Image.open(__import__("io").BytesIO(b"".join(r.streaming_content) if r.streaming else r.content))
        assert image.size == (512, 512)
        rendered.append(np.asarray(image.convert("L")))
    assert not np.array_equal(rendered[0], rendered[1])


@pytest.mark.django_db
def test_history_page_lists_no_results_yet(clinician_a):
    page = login(clinician_a).get("/history/").content.decode()
    assert "No results yet" in page


@pytest.mark.django_db
def test_error_pages_are_plain_words(clinician_a, settings):
    settings.DEBUG = False
    client = login(clinician_a)
    r = client.get("/studies/1.2.3.4.5/")
    assert r.status_code == 404
    body = r.content.decode()
    assert "Not found" in body and "Traceback" not in body


@pytest.mark.django_db
def test_share_gives_read_access_is_audited_and_revocable(stored_ct, clinician_a, clinician_b, group_b):
    study = stored_ct.series.study
    other = login(clinician_b)
    assert other.get(f"/studies/{study.study_instance_uid}/").status_code == 404
    owner = login(clinician_a)
    r = owner.post(f"/studies/{study.study_instance_uid}/share", {"username": "clb", "expires": "2099-01-01"})
    assert r.status_code == 302
    assert other.get(f"/studies/{study.study_instance_uid}/").status_code == 200
    assert other.get(f"/frames/{stored_ct.sop_instance_uid}/0.png").status_code == 200
    assert AuditRecord.objects.filter(action="share-use", username="clb").exists()
    # Read-only: the recipient cannot pass it on.
    r = other.post(f"/studies/{study.study_instance_uid}/share", {"group": group_b.pk, "expires": "2099-01-01"})
    assert AuditRecord.objects.filter(action="share", outcome="denied", username="clb").exists()
    share = study.shares.get()
    owner.post(f"/shares/{share.pk}/revoke")
    assert other.get(f"/studies/{study.study_instance_uid}/").status_code == 404
    assert list(AuditRecord.objects.filter(action__in=["share", "share-revoke"], outcome="ok").order_by("id")
                .values_list("action", flat=True)) == ["share", "share-revoke"]


@pytest.mark.django_db
def test_history_and_home_list_visible_analyses(stored_ct, clinician_a, clinician_b, researcher_a):
    from medvault.analysis.models import AnalysisJob, AnalysisResult

    job = AnalysisJob.objects.create(instance=stored_ct, model_name="lung-ct", requested_by=clinician_a, status="done")
    result = AnalysisResult.objects.create(
        job=job, instance=stored_ct, model_name="lung-ct", label="adenocarcinoma",
        probabilities={"adenocarcinoma": 0.87, "normal": 0.13}, requested_by=clinician_a,
    )
    page = login(clinician_a).get("/history/").content.decode()
    assert "Lung cancer detection" in page and "adenocarcinoma" in page and "87%" in page
    assert f"result={result.pk}" in page and "View file" in page and ">cla<" in page
    home = login(clinician_a).get("/").content.decode()
    assert "adenocarcinoma" in home
    # Another group's user does not see it; a researcher sees it without identities.
    assert "adenocarcinoma" not in login(clinician_b).get("/history/").content.decode()
    research = login(researcher_a).get("/history/").content.decode()
    assert "adenocarcinoma" in research and stored_ct.series.study.patient.patient_id not in research
    assert ">cla<" not in research


@pytest.mark.django_db
def test_upload_target_group_must_be_chosen_among_several(blob_dir, group_a, group_b, technician_a):
    technician_a.groups.add(group_b)
    client = login(technician_a)
    page = client.get("/upload/").content.decode()
    assert "Radiology A" in page and "Radiology B" in page
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes())})
    assert r.status_code == 400 and "Choose the group" in r.json()["error"]
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes()), "group": group_b.pk})
    assert r.json()["results"][0]["status"] == "stored"
    from medvault.archive.models import Study

    study = Study.objects.get()
    assert study.group == group_b
    # The technician sees what they uploaded, and nothing else of their groups.
    assert client.get(f"/studies/{study.study_instance_uid}/").status_code == 200
    other = make_study(group_b, patient_name="Not^Theirs")
    assert client.get(f"/studies/{other.study_instance_uid}/").status_code == 404


@pytest.mark.django_db
def test_user_without_group_is_told_to_ask_for_one(blob_dir, db):
    lonely = make_user("lonely", "clinician")
    client = login(lonely)
    assert "not a member of any group" in client.get("/upload/").content.decode()
    r = client.post("/upload/file", {"file": SimpleUploadedFile("CT_small.dcm", sample_bytes())})
    assert r.status_code == 400 and "administrator" in r.json()["error"]
