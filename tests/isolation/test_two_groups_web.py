"""The hostile two-group suite, web doors: B tries every door with A's UIDs and PatientID.

Nothing of A may come back to B, in any answer or error message: not through the pages,
``/api/v1``, DICOMweb (STOW, QIDO, WADO-RS), WADO-URI or the analysis export; and no write
of B may land in A's study. Runs on every database of the CI (SQLite, PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dicomweb.helpers import stow
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pydicom.uid import generate_uid

from .world import A_NAME, A_PATIENT_ID, PASSWORD, World, a_result, dicom_file, leaks, world_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(blob_dir: Any, settings: Any) -> World:
    settings.MEDVAULT_AUTO_ANALYSE = False
    return world_build()


def _session(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- writes: B sends A's identifiers through every ingest door -------------------------

def _attacks(world: World) -> dict[str, bytes]:
    """Instances B crafts from what it knows of A: A's study UID (with A's PatientID and a
    made-up name), A's series UID, A's SOP Instance UID."""
    return {
        "study": dicom_file(patient_id=A_PATIENT_ID, patient_name="Made^Up", study_uid=world.study_uid, seed=5),
        "series": dicom_file(patient_id="MRN-B-9", patient_name="Bee^Bob", series_uid=world.series_uid, seed=6),
        "instance": dicom_file(patient_id="MRN-B-9", patient_name="Bee^Bob", study_uid=world.study_uid,
                               series_uid=world.series_uid, sop_uid=world.sop_uids[0], seed=7),
    }


def _b_sees_a(world: World, user: Any) -> bool:
    from medvault.archive.access import visible_to

    return visible_to(user).filter(study_instance_uid=world.study_uid).exists()


@pytest.mark.parametrize("door", ["web", "stow", "c-store", "cli"])
@pytest.mark.parametrize("reused", ["study", "series", "instance"])
def test_finding1_a_uid_from_b_is_refused_and_reveals_nothing(world: World, door: str, reused: str) -> None:
    """Finding 1: an instance of B carrying A's study/series/SOP UID was stored into A's
    study, and B could then read it all. Now it is refused, revealing nothing, at every door."""
    data = _attacks(world)[reused]
    before = world.a_counts()
    if door == "web":
        response = _session(world.tech_b).post("/upload/file", {"file": SimpleUploadedFile("x.dcm", data)})
        assert response.status_code == 200
        [item] = response.json()["results"]
        assert item["status"] == "rejected" and item["study_url"] is None
        text = response.content
    elif door == "stow":
        response = stow(Client(), world.headers("tech_b"), [data])
        assert response.status_code == 409
        failed = response.json()["00081198"]["Value"]
        assert failed[0]["00081197"]["Value"] == [0x0124]
        text = response.content
    elif door == "c-store":
        from dimse.test_handlers import FakeEvent

        from medvault.dimse import handlers
        from medvault.dimse.status import Status

        status = handlers.handle_store(FakeEvent("MOD_B", data=data))
        assert int(status.Status) == Status.NOT_AUTHORISED
        text = str(status.ErrorComment).encode()
    else:
        from medvault.archive.ingest import instance_store
        from medvault.archive.outcomes import RejectReason

        result = instance_store(data=data, source="cli", group="dept-b")
        assert result.status == "rejected" and result.reject is RejectReason.OTHER_GROUP
        text = (result.reason or "").encode()
    # Only what B sent may be named; none of A's other UIDs.
    not_sent = {"study": (world.series_uid, *world.sop_uids),
                "series": (world.study_uid, *world.sop_uids),
                "instance": (world.sop_uids[1],)}[reused]
    assert not leaks(text, also=(A_NAME, *not_sent))
    assert world.a_counts() == before
    assert not _b_sees_a(world, world.clin_b) and not _b_sees_a(world, world.tech_b)
    from medvault.accounts.models import AuditRecord

    # The audit trail keeps what B sent, not what A holds.
    for record in AuditRecord.objects.filter(username__in=["tech_b", "clin_b"]):
        assert not leaks(f"{record.patient_id} {record.detail}")


def test_finding2_rejections_inside_a_group_name_nothing_stored() -> None:
    """Finding 2: rejections named the stored patient's PatientID ("already stored for
    another patient (PatientID 'MRN-A-0001')") and a reused series UID's study UID."""
    from django.contrib.auth.models import Group

    from medvault.archive.ingest import instance_store

    group = Group.objects.create(name="one")
    study_uid, series_uid = generate_uid(), generate_uid()
    first = dicom_file(patient_id=A_PATIENT_ID, patient_name=A_NAME, study_uid=study_uid, series_uid=series_uid)
    assert instance_store(data=first, source="cli", group=group).status == "stored"
    other_patient = dicom_file(patient_id="OTHER-1", patient_name="Oth^Er", study_uid=study_uid, seed=3)
    result = instance_store(data=other_patient, source="cli", group=group)
    assert result.status == "rejected" and "another patient" in result.reason
    assert A_PATIENT_ID not in result.reason and not leaks(result.reason)
    other_study = dicom_file(patient_id=A_PATIENT_ID, patient_name=A_NAME, series_uid=series_uid, seed=4)
    result = instance_store(data=other_study, source="cli", group=group)
    assert result.status == "rejected" and "another study" in result.reason
    assert study_uid not in result.reason


def test_finding3_patient_records_are_per_group(world: World) -> None:
    """Finding 3: B uploads an image with A's PatientID and a made-up name; B's study page,
    QIDO and the studies page then showed A's name and birth date."""
    from medvault.archive.models import Patient, Study

    data = dicom_file(patient_id=A_PATIENT_ID, patient_name="Made^Up", seed=9, PatientBirthDate="20000101")
    response = stow(Client(), world.headers("clin_b"), [data])
    assert response.status_code == 200, response.content
    b_study = Study.objects.exclude(study_instance_uid=world.study_uid).get()
    assert b_study.group == world.group_b and b_study.patient.group == world.group_b
    assert b_study.patient.patient_name == "Made^Up"
    assert Patient.objects.filter(patient_id=A_PATIENT_ID).count() == 2
    a_patient = world.a_study().patient
    assert a_patient.patient_name == A_NAME and not a_patient.conflicts.exists()
    client = _session(world.clin_b)
    answers = [
        client.get(f"/studies/{b_study.study_instance_uid}/"),
        client.get("/studies/", {"patient_id": A_PATIENT_ID}),
        client.get("/studies/", {"patient_name": "SECRET*"}),
        Client().get("/dicomweb/studies", {"PatientName": "SECRET*"}, **world.headers("clin_b")),
        Client().get("/dicomweb/studies", {"PatientID": A_PATIENT_ID, "includefield": "all"},
                     **world.headers("clin_b")),
        Client().get(f"/dicomweb/studies/{b_study.study_instance_uid}/metadata", **world.headers("clin_b")),
    ]
    for answer in answers:
        assert answer.status_code == 200
        found = leaks(_body(answer), echo=("SECRET*", "SECRET%2A"))
        assert not found, (answer.wsgi_request.get_full_path(), found)
    assert b"Made" in _body(answers[0])
    assert answers[3].json() == [] if answers[3].content else True
    qido = answers[4].json()
    assert [item["0020000D"]["Value"][0] for item in qido] == [b_study.study_instance_uid]


# --- reads: B asks for A's UIDs at every read door ----------------------------------------

def _read_doors(world: World, result_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    st, se, sop = world.study_uid, world.series_uid, world.sop_uids[0]
    dw = f"/dicomweb/studies/{st}"
    return [
        ("page", f"/studies/{st}/", {}),
        ("page", f"/viewer/{st}/", {}),
        ("page", f"/series/{se}/thumbnail.png", {}),
        ("page", f"/instances/{sop}/download", {}),
        ("page", f"/frames/{sop}/0.png", {}),
        ("page", f"/frames/{sop}/info", {}),
        ("page", "/studies/", {"patient_id": A_PATIENT_ID}),
        ("page", "/studies/", {"patient_name": "SECRET*"}),
        ("page", "/", {}),
        ("page", "/history/", {}),
        ("api", "/api/v1/analyses", {"study": st}),
        ("api", "/api/v1/analyses", {"instance": sop}),
        ("api", "/api/v1/analyses", {}),
        ("api", f"/api/v1/analyses/{result_id}", {}),
        ("api", f"/api/v1/analyses/{result_id}/heatmap.png", {}),
        ("api", f"/api/v1/similar/{sop}/thumbnail.png", {}),
        ("dicomweb", dw, {}),
        ("dicomweb", f"{dw}/metadata", {}),
        ("dicomweb", f"{dw}/rendered", {}),
        ("dicomweb", f"{dw}/thumbnail", {}),
        ("dicomweb", f"{dw}/series", {}),
        ("dicomweb", f"{dw}/instances", {}),
        ("dicomweb", f"{dw}/series/{se}", {}),
        ("dicomweb", f"{dw}/series/{se}/metadata", {}),
        ("dicomweb", f"{dw}/series/{se}/instances/{sop}", {}),
        ("dicomweb", f"{dw}/series/{se}/instances/{sop}/metadata", {}),
        ("dicomweb", f"{dw}/series/{se}/instances/{sop}/frames/1", {}),
        ("dicomweb", f"{dw}/series/{se}/instances/{sop}/rendered", {}),
        ("dicomweb", f"{dw}/series/{se}/instances/{sop}/bulkdata/7FE00010", {}),
        ("dicomweb", "/dicomweb/studies", {"StudyInstanceUID": st}),
        ("dicomweb", "/dicomweb/studies", {"PatientID": A_PATIENT_ID}),
        ("dicomweb", "/dicomweb/studies", {"PatientName": "SECRET*", "fuzzymatching": "true"}),
        ("dicomweb", "/dicomweb/series", {"SeriesInstanceUID": se}),
        ("dicomweb", "/dicomweb/instances", {"SOPInstanceUID": sop}),
        ("wado-uri", "/dicomweb/wado", {"requestType": "WADO", "studyUID": st, "seriesUID": se,
                                         "objectUID": sop, "contentType": "application/dicom"}),
        ("wado-uri", "/dicomweb/wado", {"requestType": "WADO", "studyUID": st, "seriesUID": se,
                                         "objectUID": sop}),
    ]


@pytest.mark.parametrize("who", ["clin_b", "tech_b"])
def test_reads_of_a_uids_by_b_return_nothing_of_a(world: World, who: str, tmp_path: Path, settings: Any) -> None:
    result = a_result(world, tmp_path, settings)
    # B first stores a study of its own with A's PatientID: the worst case for a mix-up.
    stow(Client(), world.headers(who), [dicom_file(patient_id=A_PATIENT_ID, patient_name="Made^Up", seed=11)])
    user = getattr(world, who)
    session = _session(user)
    other_uids = (world.series_uid, *world.sop_uids)
    for kind, url, params in _read_doors(world, result.pk):
        client = session if kind == "page" else Client()
        headers = {} if kind == "page" else world.headers(who)
        response = client.get(url, params, **headers)
        body = _body(response)
        assert response.status_code in (200, 204, 403, 404), (url, response.status_code)
        echo = tuple(str(v) for v in params.values()) + ("SECRET%2A",)
        found = leaks(body, echo=echo,
                      also=() if world.study_uid in url + str(params) else (world.study_uid,))
        assert not found, (url, params, found)
        for uid in other_uids:
            if uid not in url and uid not in str(params):
                assert uid.encode() not in body, (url, params, uid)
    # The similar-image search asked about A's instance: refused like an unknown one.
    response = Client().post("/api/v1/similar", {"sop_instance_uid": world.sop_uids[0]}, **world.headers(who))
    assert response.status_code in (403, 404) and not leaks(response.content)
    # Asking for an analysis of A's instance, or exporting A's result: not found.
    import json

    response = Client().post("/api/v1/analyses", data=json.dumps({"sop_instance_uid": world.sop_uids[0],
                                                                 "model": "lung-ct"}),
                             content_type="application/json", **world.headers(who))
    assert response.status_code in (403, 404) and not leaks(response.content)
    # Sharing A's study onward from a page: not found, nothing shared.
    from medvault.accounts.models import StudyShare

    response = session.post(f"/studies/{world.study_uid}/share",
                            {"user": "clin_b", "expires": "2099-01-01", "note": "x"})
    assert response.status_code in (403, 404) and not leaks(_body(response))
    assert not StudyShare.objects.exists()
    before = world.a_counts()
    response = Client().post(f"/api/v1/analyses/{result.pk}/export", **world.headers(who))
    assert response.status_code in (403, 404) and not leaks(response.content)
    assert world.a_counts() == before


# --- the analysis export: a read-only share does not write --------------------------------

def test_finding6_read_only_share_recipient_cannot_export(world: World, tmp_path: Path, settings: Any) -> None:
    """Finding 6: a read-only share recipient stored a new series into the shared study
    through ``POST /api/v1/analyses/N/export``."""
    from datetime import timedelta

    from django.utils import timezone

    from medvault.accounts.services import share_create

    result = a_result(world, tmp_path, settings)
    url = f"/api/v1/analyses/{result.pk}/export"
    # Without a share B cannot even find the result.
    assert Client().post(url, **world.headers("clin_b")).status_code == 404
    share_create(study=world.a_study(), by=world.clin_a, user=world.clin_b,
                 expires_at=timezone.now() + timedelta(days=1))
    assert Client().get(f"/api/v1/analyses/{result.pk}", **world.headers("clin_b")).status_code == 200
    before = world.a_counts()
    response = Client().post(url, **world.headers("clin_b"))
    assert response.status_code == 403, response.content
    assert "read-only" in response.json()["error"]
    assert world.a_counts() == before
    # The study's own group still may.
    response = Client().post(url, **world.headers("clin_a"))
    assert response.status_code == 201, response.content
    assert world.a_counts()[0] == before[0] + 1


# --- STOW picks its group explicitly ------------------------------------------------------

def test_stow_group_is_named_or_the_only_one_never_guessed(world: World) -> None:
    from medvault.archive.models import Study

    world.clin_b.groups.add(world.group_a)  # member of both: "dept-a" sorts first
    body = [dicom_file(patient_id="P-2G", patient_name="Two^Groups", seed=21)]
    response = stow(Client(), world.headers("clin_b"), body)
    assert response.status_code == 400 and "several groups" in response.json()["error"]
    assert not Study.objects.filter(patient__patient_id="P-2G").exists()
    client = Client()
    from dicomweb.helpers import stow_body

    data, ctype = stow_body(body)
    response = client.post("/dicomweb/studies?group=dept-b", data=data, content_type=ctype,
                           **world.headers("clin_b"))
    assert response.status_code == 200, response.content
    assert Study.objects.get(patient__patient_id="P-2G").group == world.group_b
    # A group of which the user is not a member is refused, named or not existing alike.
    for name in ("no-such-group", "dept-c"):
        response = Client().post(f"/dicomweb/studies?group={name}", data=data, content_type=ctype,
                                 **world.headers("tech_b"))
        assert response.status_code == 403
        assert response.json()["error"] == "you may not upload into that group"


def test_stow_by_an_administrator_of_no_group_stores_into_no_group(world: World) -> None:
    """The first administrator of a fresh installation is a member of no group: their
    uploads go to no group (administrators only), or to the group they name."""
    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create
    from medvault.archive.models import Study

    User.objects.create_user(username="root", password=PASSWORD, role="administrator",
                             status="approved", is_superuser=True)
    _, key = token_create(user=User.objects.get(username="root"), name="t")
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    from dicomweb.helpers import stow_body

    data, ctype = stow_body([dicom_file(patient_id="P-ADM", patient_name="Ad^Min", seed=51)])
    assert Client().post("/dicomweb/studies", data=data, content_type=ctype, **headers).status_code == 200
    assert Study.objects.get(patient__patient_id="P-ADM").group is None
    data, ctype = stow_body([dicom_file(patient_id="P-ADM2", patient_name="Ad^Min", seed=52)])
    response = Client().post("/dicomweb/studies?group=dept-b", data=data, content_type=ctype, **headers)
    assert response.status_code == 200
    assert Study.objects.get(patient__patient_id="P-ADM2").group == world.group_b
