"""A group is a namespace: each patient record belongs to one group.

Patient identity becomes (group, IssuerOfPatientID, PatientID). Every existing patient takes
the group of its studies. A patient whose studies belong to several groups (one record
shared across groups, as archives before this migration allowed) is split: the group of its
oldest study keeps the record, and each other group gets a copy of the demographics with
its studies moved onto it. Each split is reported on the console and written to the audit
trail (action ``patient-split``), so an administrator can review it. Nothing is deleted.
"""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


def _split_report(apps, patient, groups_by_id, copies) -> str:  # type: ignore[no-untyped-def]
    def name(group_id):  # type: ignore[no-untyped-def]
        return groups_by_id.get(group_id, "no group") if group_id is not None else "no group"

    kept = name(patient.group_id)
    made = ", ".join(f"{name(g)} (patient row {p.pk})" for g, p in copies)
    return (f"patient row {patient.pk} (PatientID {patient.patient_id!r}, issuer "
            f"{patient.issuer_of_patient_id!r}) was shared by {1 + len(copies)} groups: kept for "
            f"{kept}; split into {made}")[:2000]


def patients_split_per_group(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Patient = apps.get_model("archive", "Patient")
    Study = apps.get_model("archive", "Study")
    Instance = apps.get_model("archive", "Instance")
    PatientConflict = apps.get_model("archive", "PatientConflict")
    Group = apps.get_model("auth", "Group")
    AuditRecord = apps.get_model("accounts", "AuditRecord")
    groups_by_id = dict(Group.objects.values_list("pk", "name"))
    for patient in Patient.objects.order_by("pk").iterator():
        group_ids: list = []
        for group_id in Study.objects.filter(patient=patient).order_by("pk").values_list("group_id", flat=True):
            if group_id not in group_ids:
                group_ids.append(group_id)
        if not group_ids:
            continue
        patient.group_id = group_ids[0]
        patient.save(update_fields=["group"])
        copies = []
        for group_id in group_ids[1:]:
            copy = Patient.objects.create(
                patient_id=patient.patient_id, issuer_of_patient_id=patient.issuer_of_patient_id,
                patient_name=patient.patient_name, patient_birth_date=patient.patient_birth_date,
                patient_sex=patient.patient_sex, group_id=group_id,
            )
            Study.objects.filter(patient=patient, group_id=group_id).update(patient=copy)
            moved_uids = Instance.objects.filter(series__study__patient=copy).values("sop_instance_uid")
            PatientConflict.objects.filter(patient=patient, sop_instance_uid__in=moved_uids).update(patient=copy)
            copies.append((group_id, copy))
        if copies:
            report = _split_report(apps, patient, groups_by_id, copies)
            print(f"\n  archive: {report}")
            AuditRecord.objects.create(
                action="patient-split", outcome="ok", patient_id=patient.patient_id[:64],
                detail=report,
            )


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_loginattempt_apitoken_auditrecord_studyshare"),
        ("archive", "0004_compressiontask_new_blob_key"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="patient", name="unique_patient_identity"),
        migrations.AddField(
            model_name="patient",
            name="group",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                related_name="patients", to="auth.group",
            ),
        ),
        migrations.RunPython(patients_split_per_group, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="patient",
            constraint=models.UniqueConstraint(
                fields=("group", "patient_id", "issuer_of_patient_id"),
                name="unique_patient_identity_in_group",
            ),
        ),
        migrations.AddConstraint(
            model_name="patient",
            constraint=models.UniqueConstraint(
                condition=models.Q(("group__isnull", True)),
                fields=("patient_id", "issuer_of_patient_id"),
                name="unique_patient_identity_without_group",
            ),
        ),
    ]
