"""Who may see and do what. Every app asks here; nothing else decides access.

* administrator: everything.
* clinician: upload, view, analyse, search, share, download/export the studies of their groups.
* technician: upload; view and search what they uploaded.
* researcher: search and view de-identified data of their groups (see ``medvault.accounts.deid``).

A group is a namespace: patients, studies, series and instances belong to one group, and
nothing of one group is readable, writable or named for another. Reads go through
``archive.access.visible_to`` and writes through ``archive.access.writable_by``; every door
(pages, ``/api/v1``, DICOMweb, WADO-URI, DIMSE) asks them. Shares add read-only access to single studies for a user or a
group until they expire. A user who is pending, rejected or inactive may do nothing.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from django.db.models import Q, QuerySet
from django.utils import timezone

from medvault.accounts.models import AccountStatus, Role, User

_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.CLINICIAN: frozenset({"upload", "view", "analyse", "search", "share", "download", "export"}),
    Role.TECHNICIAN: frozenset({"upload", "view", "search", "download"}),
    Role.RESEARCHER: frozenset({"view", "search"}),
}


def is_active_user(user: Any) -> TypeGuard[User]:
    """Authenticated, active and approved (superusers count as approved)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.status == AccountStatus.APPROVED)


def is_administrator(user: Any) -> bool:
    return is_active_user(user) and bool(user.is_superuser or user.role == Role.ADMINISTRATOR)


def user_can(user: Any, action: str) -> bool:
    """Whether the user's role allows ``action`` at all ("upload", "view", "analyse",
    "search", "share", "download", "export", "admin"). Which studies is ``visible_to``."""
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


class GroupChoiceError(ValueError):
    """The group an upload names is not one the user may write into (or none was named
    where one is needed). The message names only the user's own groups."""


def ingest_group(user: Any, requested: Any = None) -> Any:
    """The group an upload by ``user`` is stored into: the one named (a ``Group``, its id
    or its name), which must be one of ``upload_groups(user)``, or else the user's default
    group: the only group they are a member of. Never guessed among several. An
    administrator who is a member of no group and names none stores into no group (seen by
    administrators only), as the first administrator of a fresh installation does.

    Raises
    ------
    GroupChoiceError
        When the named group is not one of theirs, or they have several and named none.
    """
    from django.contrib.auth.models import Group

    groups = upload_groups(user)
    if requested not in (None, ""):
        if isinstance(requested, Group):
            found = groups.filter(pk=requested.pk).first()
        elif str(requested).strip().isdigit():
            found = groups.filter(pk=int(str(requested).strip())).first()
        else:
            found = groups.filter(name=str(requested).strip()).first()
        if found is None:
            raise GroupChoiceError("you may not upload into that group")
        return found
    if not user_can(user, "upload"):
        raise GroupChoiceError("you may not upload")
    choices = list(user.groups.order_by("pk")[:2])
    if len(choices) == 1:
        return choices[0]
    if not choices:
        if is_administrator(user):
            return None
        raise GroupChoiceError("you are not a member of any group; ask an administrator to add you to one")
    raise GroupChoiceError("you are a member of several groups; name the one to store into (group=NAME)")


def upload_groups(user: Any) -> QuerySet[Any]:
    """Groups ``user`` may upload into (administrators: all groups)."""
    from django.contrib.auth.models import Group

    if not user_can(user, "upload"):
        return Group.objects.none()
    if is_administrator(user):
        return Group.objects.all().order_by("name")
    groups: QuerySet[Group] = user.groups.all().order_by("name")
    return groups
