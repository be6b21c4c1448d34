from typing import Any

from django.contrib import admin
from django.utils import timezone

from medvault.dimse.models import RemoteAE, StorageCommitment


@admin.register(RemoteAE)
class RemoteAEAdmin(admin.ModelAdmin[RemoteAE]):
    list_display = ("ae_title", "host", "port", "group", "may_store", "may_query", "may_retrieve")
    list_filter = ("group", "may_store", "may_query", "may_retrieve")
    search_fields = ("ae_title", "host", "description")


@admin.register(StorageCommitment)
class StorageCommitmentAdmin(admin.ModelAdmin[StorageCommitment]):
    """Storage commitment requests and whether their reports reached the requesting AE."""

    list_display = ("transaction_uid", "ae_title", "state", "attempts", "created_at", "delivered_at",
                    "next_attempt_at", "last_error")
    list_filter = ("state", "ae_title")
    search_fields = ("transaction_uid", "ae_title")
    readonly_fields = [f.name for f in StorageCommitment._meta.fields]
    actions = ["deliver_again"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.action(description="Send the report again (at the next delivery round)")
    def deliver_again(self, request: Any, queryset: Any) -> None:
        count = queryset.update(state=StorageCommitment.State.PENDING, attempts=0,
                                next_attempt_at=timezone.now())
        self.message_user(request, f"{count} report(s) queued for delivery.")
