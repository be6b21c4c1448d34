"""Remote DICOM application entities (modalities, PACS, workstations) MedVault talks to."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

ae_title_validator = RegexValidator(
    r"^[ -\[\]-~]{1,16}$", "An AE title is 1-16 printable ASCII characters without backslash."
)


class RemoteAE(models.Model):
    """A known peer: who may associate, what it may do, and where C-MOVE sends to."""

    # ``archive.access.visible_to`` tells a peer from a user by this (archive does not import dimse).
    is_dicom_peer = True

    ae_title = models.CharField(max_length=16, unique=True, validators=[ae_title_validator])
    host = models.CharField(max_length=255, help_text="Host name or IP address (C-MOVE target).")
    port = models.PositiveIntegerField(
        default=104, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    description = models.CharField(max_length=200, blank=True)
    group = models.ForeignKey(
        Group, on_delete=models.PROTECT, null=True, blank=True, related_name="remote_aes",
        help_text="Group that studies stored by this AE belong to; also bounds what it may "
        "query and retrieve.",
    )
    may_store = models.BooleanField(default=True, help_text="May send C-STORE requests.")
    may_query = models.BooleanField(default=True, help_text="May send C-FIND requests.")
    may_retrieve = models.BooleanField(
        default=True, help_text="May send C-MOVE / C-GET requests and be a C-MOVE destination."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "remote AE"
        ordering = ["ae_title"]

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.host}:{self.port})"


class StorageCommitment(models.Model):
    """One Storage Commitment Push Model request (N-ACTION) and its report (N-EVENT-REPORT).

    Written before the N-ACTION is answered, so a report is never lost: the DICOM server's
    delivery thread evaluates it (``result``), opens an association to the AE and sends the
    N-EVENT-REPORT, and tries again with a bounded backoff until it is delivered or
    ``MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS`` are spent (``state`` failed).
    """

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # every attempt to deliver failed; see last_error

    transaction_uid = models.CharField(max_length=64, db_index=True)
    remote_ae = models.ForeignKey(
        RemoteAE, on_delete=models.SET_NULL, null=True, blank=True, related_name="storage_commitments"
    )
    ae_title = models.CharField(max_length=16, help_text="The requesting AE, as it called.")
    # [[SOP Class UID, SOP Instance UID], ...] as requested, in order.
    requested = models.JSONField()
    # {"committed": [[class, instance], ...], "failed": [[class, instance, reason], ...]};
    # null until evaluated (at the first delivery attempt).
    result = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next delivery attempt is due (null once delivered or failed). A delivering
    # process claims a row by moving this past now (a lease), so two DICOM servers never
    # send the same report at once.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="dimse_commit_due")]

    def __str__(self) -> str:
        return f"{self.transaction_uid} from {self.ae_title} ({self.state})"
