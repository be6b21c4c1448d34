"""Two groups, A and B, and what B knows of A: the fixture of the hostile suite.

Group A (a department) holds one real CT study. Everything a person of B could have learnt of
A (its UIDs, the PatientID) is in ``World``; what B must never see (A's demographics and
descriptions) is in ``A_SECRETS``. ``leaks`` names any secret in an answer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from dicomweb.ctgen import ct_series
from django.contrib.auth.models import Group
from pydicom.uid import generate_uid

A_PATIENT_ID = "MRN-A-0001"
A_NAME = "SECRET^ALICE"
A_BIRTH = "19610203"
A_ACCESSION = "ACC-A-7731"
A_STUDY_DESCRIPTION = "ADEPT-ONLY thorax review"
A_SERIES_DESCRIPTION = "ADEPT-ONLY axial"
A_REFERRING = "Referrer^Avery"
# What of A must never reach B (the PatientID is not here: B uses it in its own uploads).
A_SECRETS = ("SECRET", "ALICE", A_BIRTH, "1961-02-03", A_ACCESSION, "ADEPT-ONLY", "Avery")
PASSWORD = "Corr3ct-Horse-Battery"


def dicom_file(*, patient_id: str, patient_name: str, study_uid: str | None = None,
               series_uid: str | None = None, sop_uid: str | None = None, seed: int = 0,
               **fields: str) -> bytes:
    """One real CT instance (pydicom's CT_small.dcm) with the identifiers given."""
    (data,) = ct_series(1, patient_id=patient_id, patient_name=patient_name,
                        study_uid=study_uid, series_uid=series_uid, seed=seed)
    ds = pydicom.dcmread(io.BytesIO(data))
    if sop_uid:
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def leaks(text: str | bytes, *, also: tuple[str, ...] = (), echo: tuple[str, ...] = ()) -> list[str]:
    """The secrets of A (and ``also``) that occur in ``text``, case-insensitively, once what
    B itself sent (``echo``: a search form shows the query it ran) is taken out."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    lowered = text.lower()
    for sent in echo:
        lowered = lowered.replace(sent.lower(), "")
    return [s for s in (*A_SECRETS, *also) if s.lower() in lowered]


@dataclass
class World:
    group_a: Group
    group_b: Group
    clin_a: Any
    clin_b: Any
    tech_b: Any
    tokens: dict[str, str]
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[bytes] = field(default_factory=list)

    def headers(self, username: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Token {self.tokens[username]}"}

    def a_study(self) -> Any:
        from medvault.archive.models import Study

        return Study.objects.get(study_instance_uid=self.study_uid)

    def a_counts(self) -> tuple[int, int, int]:
        """(series, instances, PatientConflict rows) of A's study: a write by B changes them."""
        from medvault.archive.models import Instance, PatientConflict, Series

        study = self.a_study()
        return (Series.objects.filter(study=study).count(),
                Instance.objects.filter(series__study=study).count(),
                PatientConflict.objects.filter(patient=study.patient).count())


def user_make(username: str, role: str, groups: list[Group]) -> tuple[Any, str]:
    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create

    user = User.objects.create_user(username=username, password=PASSWORD, role=role,
                                    status="approved", full_name=username.title(),
                                    email=f"{username}@example.org")
    for group in groups:
        user.groups.add(group)
    return user, token_create(user=user, name="test")[1]


def world_build() -> World:
    """Groups A and B, a clinician of each and a technician of B, AEs MOD_A and MOD_B
    (127.0.0.1), and A's study of two real CT instances stored through the ingest service."""
    from medvault.archive.services import instance_store
    from medvault.dimse.models import RemoteAE

    group_a = Group.objects.create(name="dept-a")
    group_b = Group.objects.create(name="dept-b")
    clin_a, tok_a = user_make("clin_a", "clinician", [group_a])
    clin_b, tok_b = user_make("clin_b", "clinician", [group_b])
    tech_b, tok_t = user_make("tech_b", "technician", [group_b])
    RemoteAE.objects.create(ae_title="MOD_A", host="127.0.0.1", port=1, group=group_a)
    RemoteAE.objects.create(ae_title="MOD_B", host="127.0.0.1", port=1, group=group_b)
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [
        dicom_file(patient_id=A_PATIENT_ID, patient_name=A_NAME, study_uid=study_uid,
                   series_uid=series_uid, seed=seed, PatientBirthDate=A_BIRTH,
                   AccessionNumber=A_ACCESSION, StudyDescription=A_STUDY_DESCRIPTION,
                   SeriesDescription=A_SERIES_DESCRIPTION, ReferringPhysicianName=A_REFERRING)
        for seed in (1, 2)
    ]
    sop_uids = []
    for data in files:
        result = instance_store(data=data, source="c-store", user=clin_a, group=group_a)
        assert result.status == "stored", result.reason
        sop_uids.append(result.sop_instance_uid)
    return World(group_a, group_b, clin_a, clin_b, tech_b,
                 {"clin_a": tok_a, "clin_b": tok_b, "tech_b": tok_t},
                 study_uid, series_uid, sop_uids, files)


def models_dir_make(path: Path, settings: Any) -> None:
    """Both models look installed; the fake backend of tests/analysis runs them."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("lung-ct", "brain-mri"):
        (path / f"{name}.onnx").write_bytes(b"placeholder: the fake backend never reads it")
    settings.MEDVAULT_MODELS_DIR = path


def a_result(world: World, tmp_path: Path, settings: Any) -> Any:
    """An analysis result (with heat-map) of A's first instance, by the fake backend."""
    from analysis.fake_backend import FakeBackend

    from medvault.analysis import services
    from medvault.archive.models import Instance

    models_dir_make(tmp_path / "models", settings)
    instance = Instance.objects.get(sop_instance_uid=world.sop_uids[0])
    services.job_enqueue(instance=instance, model_name="lung-ct", requested_by=world.clin_a)
    [outcome] = services.jobs_drain(backend=FakeBackend())
    assert outcome.result is not None and outcome.result.heatmap_key
    return outcome.result
