"""Read-mostly admin views of the index (writes go through the ingest service).

Every change is audited (``AuditedModelAdmin``); deleting an instance, series or study goes
through ``medvault.archive.deletion``, which audits the UIDs and keeps the counts true.
"""

from typing import Any

from django.contrib import admin

from medvault.accounts.admin_audit import AuditedModelAdmin
from medvault.archive import deletion
from medvault.archive.models import Instance, Patient, PatientConflict, Series, Study


@admin.register(Patient)
class PatientAdmin(AuditedModelAdmin):
    list_display = (
        "patient_id",
        "issuer_of_patient_id",
        "group",
        "patient_name",
        "patient_birth_date",
        "patient_sex",
    )
    list_filter = ("group",)
    list_select_related = ("group",)
    search_fields = ("patient_id", "patient_name")


@admin.register(PatientConflict)
class PatientConflictAdmin(AuditedModelAdmin):
    list_display = ("patient", "sop_instance_uid", "field", "stored_value", "received_value", "created_at")
    list_select_related = ("patient",)
    readonly_fields = ("patient", "sop_instance_uid", "field", "stored_value", "received_value")


@admin.register(Study)
class StudyAdmin(AuditedModelAdmin):
    list_display = ("study_instance_uid", "patient", "study_date", "modalities_in_study",
                    "number_of_series", "number_of_instances", "group")
    list_select_related = ("patient", "group")
    search_fields = ("study_instance_uid", "accession_number", "patient__patient_id")
    readonly_fields = ("number_of_series", "number_of_instances", "modalities_in_study")

    def delete_model(self, request: Any, obj: Any) -> None:
        deletion.study_delete(study=obj, by=request.user, request=request,
                              detail="Django admin: study deleted")


@admin.register(Series)
class SeriesAdmin(AuditedModelAdmin):
    list_display = ("series_instance_uid", "modality", "series_number", "number_of_instances")
    search_fields = ("series_instance_uid",)
    readonly_fields = ("number_of_instances",)

    def delete_model(self, request: Any, obj: Any) -> None:
        deletion.series_delete(series=obj, by=request.user, request=request,
                               detail="Django admin: series deleted")


@admin.register(Instance)
class InstanceAdmin(AuditedModelAdmin):
    list_display = ("sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "stored_bytes", "created_at")
    search_fields = ("sop_instance_uid",)
    exclude = ("metadata",)
    readonly_fields = [f.name for f in Instance._meta.fields if f.name != "metadata"]

    def delete_model(self, request: Any, obj: Any) -> None:
        deletion.instance_delete(instance=obj, by=request.user, request=request,
                                 detail="Django admin: instance deleted")
