"""Read-mostly admin views of the index (writes go through the ingest service)."""

from django.contrib import admin

from medvault.archive.models import Instance, Patient, PatientConflict, Series, Study


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("patient_id", "issuer_of_patient_id", "group", "patient_name", "patient_birth_date", "patient_sex")
    list_filter = ("group",)
    list_select_related = ("group",)
    search_fields = ("patient_id", "patient_name")


@admin.register(PatientConflict)
class PatientConflictAdmin(admin.ModelAdmin):
    list_display = ("patient", "sop_instance_uid", "field", "stored_value", "received_value", "created_at")
    list_select_related = ("patient",)
    readonly_fields = ("patient", "sop_instance_uid", "field", "stored_value", "received_value")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("study_instance_uid", "patient", "study_date", "modalities_in_study",
                    "number_of_series", "number_of_instances", "group")
    list_select_related = ("patient", "group")
    search_fields = ("study_instance_uid", "accession_number", "patient__patient_id")
    readonly_fields = ("number_of_series", "number_of_instances", "modalities_in_study")


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("series_instance_uid", "modality", "series_number", "number_of_instances")
    search_fields = ("series_instance_uid",)
    readonly_fields = ("number_of_instances",)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "stored_bytes", "created_at")
    search_fields = ("sop_instance_uid",)
    exclude = ("metadata",)
    readonly_fields = [f.name for f in Instance._meta.fields if f.name != "metadata"]
