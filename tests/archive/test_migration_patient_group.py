"""Migration archive 0005: existing archives keep working; a patient shared across groups
(possible before groups were namespaces) is split per group, and the split is reported."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("archive", "0004_compressiontask_new_blob_key"),
    ("accounts", "0002_loginattempt_apitoken_auditrecord_studyshare"),
]
AFTER = [("archive", "0005_patient_group")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_shared_patient_is_split_per_group_and_reported(capsys: Any) -> None:
    old = _migrate(BEFORE)
    try:
        Group = old.get_model("auth", "Group")
        Patient = old.get_model("archive", "Patient")
        Study = old.get_model("archive", "Study")
        Series = old.get_model("archive", "Series")
        Instance = old.get_model("archive", "Instance")
        PatientConflict = old.get_model("archive", "PatientConflict")
        a, b = Group.objects.create(name="mig-a"), Group.objects.create(name="mig-b")
        shared = Patient.objects.create(patient_id="P-SHARED", patient_name="Alpha^Anna",
                                        patient_birth_date="1960-01-01")
        alone = Patient.objects.create(patient_id="P-ALONE", patient_name="Solo^Sam")
        uids = {}
        for n, (patient, group) in enumerate([(shared, a), (shared, b), (shared, None), (alone, b)]):
            study = Study.objects.create(study_instance_uid=f"1.2.3.{n}", patient=patient, group=group)
            series = Series.objects.create(series_instance_uid=f"1.2.3.{n}.1", study=study)
            Instance.objects.create(
                sop_instance_uid=f"1.2.3.{n}.1.1", series=series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                received_transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                blob_key="0" * 64, content_sha256="0" * 64, received_bytes=0, stored_bytes=0, metadata={},
            )
            uids[n] = f"1.2.3.{n}.1.1"
        # B's instance once disagreed with the shared record: the conflict follows B's copy.
        PatientConflict.objects.create(patient=shared, sop_instance_uid=uids[1], field="patient_name",
                                       stored_value="Alpha^Anna", received_value="Beta^Bea")
        new = _migrate(AFTER)
    finally:
        _migrate([("archive", "0005_patient_group")])
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    Patient = new.get_model("archive", "Patient")
    Study = new.get_model("archive", "Study")
    AuditRecord = new.get_model("accounts", "AuditRecord")
    rows = {(p.group.name if p.group else None): p for p in Patient.objects.filter(patient_id="P-SHARED")}
    assert set(rows) == {"mig-a", "mig-b", None}
    assert rows["mig-a"].pk == shared.pk  # the oldest study's group keeps the record
    for group_name, patient in rows.items():
        assert patient.patient_name == "Alpha^Anna" and str(patient.patient_birth_date) == "1960-01-01"
        studies = list(Study.objects.filter(patient=patient))
        assert [s.group.name if s.group else None for s in studies] == [group_name]
    assert Patient.objects.get(patient_id="P-ALONE").group.name == "mig-b"
    conflicts = new.get_model("archive", "PatientConflict").objects.get()
    assert conflicts.patient_id == rows["mig-b"].pk
    [report] = AuditRecord.objects.filter(action="patient-split")
    assert report.patient_id == "P-SHARED" and "mig-b" in report.detail and "no group" in report.detail
    assert "P-SHARED" in capsys.readouterr().out
