"""Analysis jobs (rows of the shared lease queue, ``medvault.archive.jobs``) and their results
(records, kept for history).

Rows hold no logic: claiming, running and storing live in ``services.py``; reads live in
``selectors.py``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from medvault.archive.jobs import JobState
from medvault.archive.models import Instance

DISCLAIMER = "decision support, not a diagnosis"


class JobTrigger(models.TextChoices):
    INGEST = "ingest", "On ingest"
    USER = "user", "Requested by a user"


class Call(models.TextChoices):
    """What a result means for the patient (see ``medvault.core.ml.call``); empty when refused
    or when the model's card has no call rule."""

    ABNORMAL = "abnormal", "Abnormal"
    NORMAL = "normal", "Normal"
    INDETERMINATE = "indeterminate", "Indeterminate"


class AnalysisJob(models.Model):
    """One request to run one model on one instance.

    A queue row of ``medvault.archive.jobs`` (``services.JOBS``): a worker owns a running job
    until ``lease_until``; after that any worker may claim it again (the previous worker is
    presumed dead). ``attempts`` counts claims; a failed attempt waits in ``queued`` until
    ``lease_until`` (the backoff).
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="analysis_jobs")
    model_name = models.CharField(max_length=32)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="analysis_jobs",
    )
    trigger = models.CharField(max_length=16, choices=JobTrigger.choices, default=JobTrigger.USER)
    status = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "created_at"], name="analysis_job_status_created"),
            models.Index(fields=["status", "lease_until"], name="analysis_job_status_lease"),
            models.Index(fields=["instance", "model_name"], name="analysis_job_instance_model"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} {self.model_name} {self.status}"


class AnalysisResult(models.Model):
    """What one model said about one instance. Exactly one per job (``job`` is unique)."""

    job = models.OneToOneField(AnalysisJob, on_delete=models.CASCADE, related_name="result")
    instance = models.ForeignKey(
        Instance, on_delete=models.CASCADE, related_name="analysis_results"
    )
    model_name = models.CharField(max_length=32, db_index=True)
    model_version = models.CharField(max_length=64, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    label = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    probabilities = models.JSONField(default=dict)
    refused = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    call = models.CharField(max_length=16, choices=Call.choices, blank=True, db_index=True)
    call_reason = models.CharField(max_length=128, blank=True)
    # Content address of the heat-map overlay PNG (transparent, same size as the image) in the
    # blob store; empty when the model gave no heat-map (e.g. refused).
    heatmap_key = models.CharField(max_length=64, blank=True)
    heatmap_width = models.PositiveIntegerField(null=True, blank=True)
    heatmap_height = models.PositiveIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="analysis_results",
    )
    # Milliseconds: from enqueue to claim, model inference alone, enqueue to stored result.
    queue_wait_ms = models.FloatField(default=0.0)
    inference_ms = models.FloatField(default=0.0)
    total_ms = models.FloatField(default=0.0)
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["instance", "model_name"], name="analysis_res_instance_model"),
        ]

    def __str__(self) -> str:
        outcome = "refused" if self.refused else (self.label or "?")
        return f"{self.model_name} {outcome} on {self.instance_id}"
