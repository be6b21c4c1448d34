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
