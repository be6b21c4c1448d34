"""The archive index: the DICOM information model Patient -> Study -> Series -> Instance.

Rows hold no logic; writes live in ``services.py`` and reads in ``selectors.py``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from medvault.archive.jobs import JobState


class Patient(models.Model):
    """One patient identity in one group: (group, IssuerOfPatientID, PatientID).

    A group is a namespace: the same PatientID sent by two groups is two patients, and
    neither group ever sees the other's demographics. Patients are never merged: a later
    instance with the same identity but a different name, sex or birth date is stored under
    this row and a ``PatientConflict`` is recorded.
    """

    patient_id = models.CharField(max_length=64, db_index=True)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_name = models.CharField(max_length=324, blank=True, db_index=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    # The group (namespace) the patient record belongs to; null: stored without a group
    # (CLI without --group, an AE without a group), visible to administrators only.
    group = models.ForeignKey(
        Group, on_delete=models.PROTECT, null=True, blank=True, related_name="patients"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["group", "patient_id", "issuer_of_patient_id"],
                name="unique_patient_identity_in_group",
            ),
            # SQL lets NULLs differ, so without a group the identity needs its own (partial)
            # index: two processes ingesting one new patient must not both create it.
            # PostgreSQL and SQLite build it; MariaDB/MySQL have no partial indexes.
            models.UniqueConstraint(
                fields=["patient_id", "issuer_of_patient_id"],
                condition=models.Q(group__isnull=True),
                name="unique_patient_identity_without_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} ({self.patient_name})"


class PatientConflict(models.Model):
    """An instance whose patient demographics disagree with the stored patient."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="conflicts")
    sop_instance_uid = models.CharField(max_length=64)
    field = models.CharField(max_length=64)
    stored_value = models.CharField(max_length=324, blank=True)
    received_value = models.CharField(max_length=324, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Study(models.Model):
    study_instance_uid = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_date = models.DateField(null=True, blank=True, db_index=True)
    study_time = models.CharField(max_length=32, blank=True)
    accession_number = models.CharField(max_length=64, blank=True, db_index=True)
    study_description = models.CharField(max_length=128, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    # Backslash-separated, as in DICOM (e.g. "CT\\PT"); kept up to date on every insert.
    modalities_in_study = models.CharField(max_length=128, blank=True)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    # The department or site (namespace) the study, its series and instances belong to; the
    # patient belongs to the same group. UIDs stay unique archive-wide: a UID held by one
    # group is refused when another sends it (archive.indexing).
    group = models.ForeignKey(
        Group, on_delete=models.PROTECT, null=True, blank=True, related_name="studies"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(models.Model):
    series_instance_uid = models.CharField(max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, blank=True, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=128, blank=True)
    body_part_examined = models.CharField(max_length=64, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(models.Model):
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_class_uid = models.CharField(max_length=64, db_index=True)
    instance_number = models.IntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    bits_allocated = models.PositiveSmallIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    # Transfer syntax as received and as stored (they differ when we re-encoded losslessly).
    received_transfer_syntax_uid = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    # Content address (SHA-256 hex) of the stored Part 10 file in the blob store.
    blob_key = models.CharField(max_length=64, db_index=True)
    # SHA-256 of the decoded pixel values and of the canonical metadata: the identity used
    # to tell a harmless re-send (duplicate) from a conflicting one (rejected).
    pixel_sha256 = models.CharField(max_length=64, blank=True)
    content_sha256 = models.CharField(max_length=64)
    received_bytes = models.PositiveBigIntegerField()
    stored_bytes = models.PositiveBigIntegerField()
    raw_pixel_bytes = models.PositiveBigIntegerField(default=0)
    # Full metadata as DICOM JSON (PS3.18 F.2) without bulk data, so metadata queries never
    # read blobs.
    metadata = models.JSONField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="uploaded_instances",
    )
    source = models.CharField(max_length=32, blank=True)  # cli, web, stow, c-store
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.sop_instance_uid


class CompressionTask(models.Model):
    """An instance kept as received until the worker re-encodes it losslessly.

    Written in the same transaction as the instance's row (deferred compression,
    ``MEDVAULT_COMPRESSION_DEFERRED``), so a queued task is as durable as the instance. A
    worker owns a claimed task until ``lease_until``; a task whose worker died is claimed
    again after that. ``error`` keeps the reason of the last failed attempt.
    """

    instance = models.OneToOneField(
        Instance, on_delete=models.CASCADE, related_name="compression_task"
    )
    # A row of ``medvault.archive.jobs``'s lease queue (``compression.TASKS``): done once
    # swapped; failed when every attempt failed (the instance stays as received).
    status = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # After the swap: the blob the row pointed at before, kept until ``swapped_at`` is older
    # than MEDVAULT_COMPRESSION_KEEP_SECONDS (a backup that copied the database just before
    # the swap still finds it), then deleted together with this row.
    old_blob_key = models.CharField(max_length=64, blank=True)
    swapped_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The re-encoded blob's key, committed before the worker writes that blob: from then on
    # scrub counts the blob as referenced, so that it never deletes it as an orphan before or
    # while the row is swapped to it. Only a later attempt (which records its own key) or the
    # deletion of this row ends that; see archive.compression. NULL: no attempt recorded one.
    new_blob_key = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "lease_until"], name="archive_compress_claim")]

    def __str__(self) -> str:
        return f"compress {self.instance_id}"
