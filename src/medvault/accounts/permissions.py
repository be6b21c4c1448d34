"""Who may see and do what. Every app asks here; nothing else decides access.

* administrator: everything.
* clinician: upload, view, analyse, search, share, download/export the studies of their groups.
* technician: upload; view and search what they uploaded.
* researcher: search and view de-identified data of their groups (see ``medvault.accounts.deid``).

Shares add read-only access to single studies for a user or a group until they expire.
A user who is pending, rejected or inactive may do nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from medvault.accounts.models import AccountStatus, Role

_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.CLINICIAN: frozenset({"upload", "view", "analyse", "search", "share", "download", "export"}),
    Role.TECHNICIAN: frozenset({"upload", "view", "search", "download"}),
    Role.RESEARCHER: frozenset({"view", "search"}),
}


def is_active_user(user: Any) -> bool:
    """Authenticated, active and approved (superusers count as approved)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.status == AccountStatus.APPROVED)


def is_administrator(user: Any) -> bool:
    return is_active_user(user) and bool(user.is_superuser or user.role == Role.ADMINISTRATOR)


def user_can(user: Any, action: str) -> bool:
    """Whether the user's role allows ``action`` at all ("upload", "view", "analyse",
    "search", "share", "download", "export", "admin"). Which studies is ``visible_studies``."""
    if not is_active_user(user):
        return False
    if is_administrator(user):
        return True
    return action in _ROLE_ACTIONS.get(user.role, frozenset())


def is_deidentified_user(user: Any) -> bool:
    """Researchers see no names, IDs or birth dates anywhere."""
    return is_active_user(user) and not is_administrator(user) and user.role == Role.RESEARCHER


def user_group_ids(user: Any) -> list[int]:
    """The ids of ``user``'s groups, read once per user object (that is, once per request:
    every request authenticates a fresh one), however many checks ask."""
    cached: list[int] | None = getattr(user, "_medvault_group_ids", None)
    if cached is None:
        cached = list(user.groups.values_list("id", flat=True))
        user._medvault_group_ids = cached
    return cached


def active_shares_q(user: Any, prefix: str = "shares__") -> Q:
    now = timezone.now()
    group_ids = user_group_ids(user)
    return Q(**{f"{prefix}revoked_at__isnull": True, f"{prefix}expires_at__gt": now}) & (
        Q(**{f"{prefix}shared_with_user": user}) | Q(**{f"{prefix}shared_with_group__in": group_ids})
    )


def visible_studies(user: Any) -> QuerySet[Any]:
    """The studies ``user`` may see: their groups' studies, studies shared with them or
    their groups (active shares only), and for technicians only what they uploaded."""
    from medvault.archive.models import Study

    if not is_active_user(user) or not user_can(user, "view"):
        return Study.objects.none()
    if is_administrator(user):
        return Study.objects.all()
    shared = Study.objects.filter(active_shares_q(user)).values("pk")
    if user.role == Role.TECHNICIAN:
        own = Study.objects.filter(series__instances__uploaded_by=user).values("pk")
        return Study.objects.filter(Q(pk__in=own) | Q(pk__in=shared))
    return Study.objects.filter(Q(group_id__in=user_group_ids(user)) | Q(pk__in=shared))


def study_access_via_share(user: Any, study: Any) -> bool:
    """True when the user sees ``study`` only because of a share (so its use is audited)."""
    if is_administrator(user):
        return False
    if user.role == Role.TECHNICIAN:
        if study.series.filter(instances__uploaded_by=user).exists():
            return False
    elif study.group_id is not None and user.groups.filter(id=study.group_id).exists():
        return False
    from medvault.archive.models import Study

    return Study.objects.filter(pk=study.pk).filter(active_shares_q(user)).exists()


def upload_groups(user: Any) -> QuerySet[Any]:
    """Groups ``user`` may upload into (administrators: all groups)."""
    from django.contrib.auth.models import Group

    if not user_can(user, "upload"):
        return Group.objects.none()
    if is_administrator(user):
        return Group.objects.all().order_by("name")
    return user.groups.all().order_by("name")
