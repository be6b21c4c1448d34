"""Only approved, active accounts authenticate (superusers always count as approved)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from medvault.accounts.models import AccountStatus


class ApprovedUserBackend(ModelBackend):
    def user_can_authenticate(self, user: Any) -> bool:
        if not super().user_can_authenticate(user):
            return False
        return bool(user.is_superuser or user.status == AccountStatus.APPROVED)
