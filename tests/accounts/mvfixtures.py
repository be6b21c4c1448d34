"""Fixtures shared by tests/accounts, tests/ui and tests/browser: users of every role in two
groups, and studies made of index rows only (no blobs), for permission tests."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.contrib.auth.models import Group

PASSWORD = "Corr3ct-Horse-Battery"
_counter = itertools.count(1)


def make_user(username: str, role: str, groups: list[Group] = (), status: str = "approved", **extra: Any):
    from medvault.accounts.models import User

    user = User.objects.create_user(
        username=username, password=PASSWORD, role=role, status=status,
        full_name=extra.pop("full_name", username.title()), email=f"{username}@example.org", **extra,
    )
    for group in groups:
        user.groups.add(group)
    return user


def make_study(
    group: Group | None,
    uploaded_by: Any = None,
    patient_id: str = "",
    patient_name: str = "",
    modality: str = "CT",
    description: str = "Chest CT",
    accession: str = "",
    study_date: str = "2024-03-01",
):
    """One study with one series and one instance (index rows only)."""
    from medvault.archive.models import Instance, Patient, Series, Study

    n = next(_counter)
    patient_id = patient_id or f"PID{n:04d}"
    patient, _ = Patient.objects.get_or_create(
        patient_id=patient_id, issuer_of_patient_id="",
        defaults={"patient_name": patient_name or f"Doe^Jane{n}", "patient_birth_date": f"1970-01-0{1 + n % 9}"},
    )
    study = Study.objects.create(
        study_instance_uid=f"1.2.826.0.1.3680043.8.498.{n}.1", patient=patient, group=group,
        study_description=description, modalities_in_study=modality, accession_number=accession or f"ACC{n}",
        study_date=study_date, number_of_series=1, number_of_instances=1,
    )
    series = Series.objects.create(
        series_instance_uid=f"1.2.826.0.1.3680043.8.498.{n}.2", study=study, modality=modality,
        series_number=1, number_of_instances=1,
    )
    Instance.objects.create(
        sop_instance_uid=f"1.2.826.0.1.3680043.8.498.{n}.3", series=series,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", instance_number=1, rows=4, columns=4,
        received_transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob_key="0" * 64, content_sha256="0" * 64, received_bytes=0, stored_bytes=0,
        metadata={"00100010": {"vr": "PN", "Value": [{"Alphabetic": patient.patient_name}]},
                  "00100020": {"vr": "LO", "Value": [patient_id]}},
        uploaded_by=uploaded_by, source="test",
    )
    return study


@pytest.fixture
def group_a(db):
    return Group.objects.create(name="Radiology A")


@pytest.fixture
def group_b(db):
    return Group.objects.create(name="Radiology B")


@pytest.fixture
def admin_user(db):
    return make_user("boss", "administrator")


@pytest.fixture
def clinician_a(group_a):
    return make_user("cla", "clinician", [group_a])


@pytest.fixture
def clinician_b(group_b):
    return make_user("clb", "clinician", [group_b])


@pytest.fixture
def technician_a(group_a):
    return make_user("tea", "technician", [group_a])


@pytest.fixture
def researcher_a(group_a):
    return make_user("rea", "researcher", [group_a])


@pytest.fixture
def study_a(group_a, clinician_a):
    return make_study(group_a, uploaded_by=clinician_a, patient_id="PAT-A", patient_name="Alpha^Anna")


@pytest.fixture
def study_b(group_b, clinician_b):
    return make_study(group_b, uploaded_by=clinician_b, patient_id="PAT-B", patient_name="Beta^Bob")


def sample_bytes(name: str = "CT_small.dcm") -> bytes:
    """A public pydicom sample file shipped inside the pydicom package (no real patient).

    Read straight from the package: ``get_testdata_file`` would try to download files that
    are not bundled, and nothing here may download.
    """
    from pathlib import Path

    import pydicom.data

    return (Path(pydicom.data.__file__).parent / "test_files" / name).read_bytes()


def stored_sample(group: Group, user: Any = None, name: str = "CT_small.dcm"):
    """Store a pydicom sample through the archive's ingest service; returns the Instance."""
    from medvault.archive.uploads import upload_store

    [result] = upload_store(name=name, data=sample_bytes(name), source="test", user=user, group=group)
    assert result.status in ("stored", "duplicate"), result.reason
    return result.instance


def png_bytes(size: int = 64) -> bytes:
    """A synthetic 8-bit grey PNG (a gradient with a bright disc)."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    image = (x * 200 // size).astype(np.uint8)
    image[(x - size // 2) ** 2 + (y - size // 2) ** 2 < (size // 5) ** 2] = 250
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
