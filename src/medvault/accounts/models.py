"""Accounts: users with a professional role and an approval status."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
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
