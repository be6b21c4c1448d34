"""Accounts: users with a professional role and an approval status."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.db import models


class Role(models.TextChoices):
    ADMINISTRATOR = "administrator", "Administrator"
    CLINICIAN = "clinician", "Clinician (radiologist / physician)"
    TECHNICIAN = "technician", "Technician"
    RESEARCHER = "researcher", "Researcher"


class AccountStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class User(AbstractUser):
    """A MedVault user. Study groups are Django's ``auth.Group`` (departments, sites)."""

    full_name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CLINICIAN)
    institution = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=20, choices=AccountStatus.choices, default=AccountStatus.PENDING
    )

    @property
    def is_administrator(self) -> bool:
        return self.is_superuser or self.role == Role.ADMINISTRATOR

    @property
    def display_name(self) -> str:
        return self.full_name or self.get_full_name() or self.username


class ApiToken(models.Model):
    """A personal API token. Only the SHA-256 of the key is stored; the key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the key, so a user can tell their tokens apart.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"


class AuditQuerySet(models.QuerySet["AuditRecord"]):
    """Audit records are append-only: bulk update and delete are refused."""

    def update(self, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError("audit records are append-only")

    def delete(self):  # type: ignore[no-untyped-def]
        raise PermissionError("audit records are append-only")

    # Django's own bulk helpers used by deletion collectors.
    def _raw_delete(self, using):  # type: ignore[no-untyped-def]
        raise PermissionError("audit records are append-only")


class AuditRecord(models.Model):
    """Who did what to which patient data, when, from where, and how it ended. Append-only."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # PROTECT: a user with an audit trail is deactivated, never deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="audit_records",
    )
    username = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=32, db_index=True)
    outcome = models.CharField(max_length=16, default="ok")
    remote_addr = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    study_uid = models.CharField(max_length=64, blank=True, db_index=True)
    series_uid = models.CharField(max_length=64, blank=True)
    sop_uid = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self._state.adding:
            raise PermissionError("audit records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError("audit records are append-only")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.outcome}"


class LoginAttempt(models.Model):
    """One login attempt; the lockout counts recent failures per username and per address.

    In the database (not a process-local cache) so that every app server sees the same count.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    username = models.CharField(max_length=150, db_index=True)
    remote_addr = models.CharField(max_length=64, db_index=True)
    succeeded = models.BooleanField(default=False)


class StudyShare(models.Model):
    """Read-only access to one study for another user or group, until it expires or is revoked."""

    study = models.ForeignKey("archive.Study", on_delete=models.CASCADE, related_name="shares")
    shared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="shares_made"
    )
    shared_with_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
        related_name="shares_received",
    )
    shared_with_group = models.ForeignKey(
        Group, on_delete=models.CASCADE, null=True, blank=True, related_name="shares_received"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(shared_with_user__isnull=False, shared_with_group__isnull=True)
                    | models.Q(shared_with_user__isnull=True, shared_with_group__isnull=False)
                ),
                name="share_has_one_recipient",
            )
        ]

    @property
    def recipient(self) -> str:
        if self.shared_with_user_id:
            return f"user {self.shared_with_user}"
        return f"group {self.shared_with_group}"


class UidPseudonym(models.Model):
    """A pseudonymous UID a researcher was shown, and the original it stands for.

    The pseudonym is derived from the original (``accounts.deid.uid_pseudonym``), so a row
    holds nothing new; it is kept only so that a pseudonym the researcher sends back (in a URL,
    query or body) can be resolved to the original. Rows are written when a pseudonym is first
    shown (``web.uid_middleware``).
    """

    pseudonym = models.CharField(max_length=64, unique=True)
    original = models.CharField(max_length=64)

    def __str__(self) -> str:
        return self.pseudonym
