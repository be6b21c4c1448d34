"""Every change made through the Django admin is written to MedVault's audit trail.

Django's own ``LogEntry`` is editable by a superuser and not where auditors look; this mixin
writes an ``AuditRecord`` (action ``admin``) for each add, change and delete a ModelAdmin
makes. Admins that delete patient data override ``delete_model``/``delete_queryset`` to call
the archive's deletion service, which audits with the UIDs.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from medvault.accounts.audit import audit_record


def _describe(obj: Any) -> str:
    return f"{obj._meta.label} {obj.pk}: {str(obj)[:120]}"


class AuditedModelAdmin(admin.ModelAdmin[Any]):
    """A ModelAdmin whose changes and deletions go to the audit log (any model)."""

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        fields = ", ".join(sorted(form.changed_data)) if form is not None else ""
        audit_record(user=request.user, action="admin", request=request,
                     detail=f"Django admin {'changed' if change else 'added'} {_describe(obj)}"
                     + (f" ({fields})" if fields else ""))

    def delete_model(self, request: Any, obj: Any) -> None:
        description = _describe(obj)
        super().delete_model(request, obj)
        audit_record(user=request.user, action="admin", request=request,
                     detail=f"Django admin deleted {description}")

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for obj in list(queryset):
            self.delete_model(request, obj)
