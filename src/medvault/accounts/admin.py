"""Django admin: a second door for user management; audit records are read-only."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from medvault.accounts.admin_audit import AuditedModelAdmin
from medvault.accounts.forms import MedVaultAdminLoginForm
from medvault.accounts.models import AccountStatus, ApiToken, AuditRecord, StudyShare, User
from medvault.accounts.services import user_sessions_end, user_set_status

# /admin/login/ is a second door: the same lockout and audit as /accounts/login/.
admin.site.login_form = MedVaultAdminLoginForm


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin[User]):
    list_display = ("username", "full_name", "email", "role", "status", "institution", "is_active")
    list_filter = ("role", "status", "is_active", "groups")
    search_fields = ("username", "full_name", "email", "institution")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("MedVault", {"fields": ("full_name", "role", "status", "institution")}),
    )
    actions = ["approve", "reject"]

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        if change and (not obj.is_active or obj.status != AccountStatus.APPROVED):
            user_sessions_end(user=obj)

    @admin.action(description="Approve the selected accounts")
    def approve(self, request, queryset):  # type: ignore[no-untyped-def]
        for user in queryset:
            user_set_status(user=user, status=AccountStatus.APPROVED, by=request.user, request=request)

    @admin.action(description="Reject the selected accounts")
    def reject(self, request, queryset):  # type: ignore[no-untyped-def]
        for user in queryset.exclude(pk=request.user.pk):
            user_set_status(user=user, status=AccountStatus.REJECTED, by=request.user, request=request)


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin[AuditRecord]):
    list_display = ("created_at", "username", "action", "outcome", "patient_id", "study_uid", "remote_addr")
    list_filter = ("action", "outcome")
    search_fields = ("username", "patient_id", "study_uid", "sop_uid")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(StudyShare)
class StudyShareAdmin(AuditedModelAdmin):
    list_display = ("study", "shared_by", "shared_with_user", "shared_with_group", "expires_at", "revoked_at")
