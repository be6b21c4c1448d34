"""Who may see and do what. Every app asks here; nothing else decides access.

* administrator: everything.
* clinician: upload, view, analyse, search, share, download/export the studies of their groups.
* technician: upload; view and search what they uploaded.
* researcher: search and view de-identified data of their groups (see ``medvault.accounts.deid``).

A group is a namespace: patients, studies, series and instances belong to one group, and
nothing of one group is readable, writable or named for another. Reads go through
``visible_to`` and writes through ``writable_by``; every door (pages, ``/api/v1``, DICOMweb,
WADO-URI, DIMSE) asks them. Shares add read-only access to single studies for a user or a
group until they expire. A user who is pending, rejected or inactive may do nothing.
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


def _is_remote_ae(principal: Any) -> bool:
    from medvault.dimse.models import RemoteAE

    return isinstance(principal, RemoteAE)


def _group_studies_q(principal: Any) -> Q:
    """The studies of ``principal``'s own namespace (groups): its home, not what is shared."""
    if _is_remote_ae(principal):
        # A configured AE without a group is a site-wide peer (e.g. the hospital PACS).
        return Q() if principal.group_id is None else Q(group_id=principal.group_id)
    if is_administrator(principal):
        return Q()
    return Q(group_id__in=user_group_ids(principal))


def _own_studies_q(user: Any) -> Q:
    """What ``user`` reads without a share: their groups' studies; for technicians only
    those of their groups that they uploaded into."""
    from medvault.archive.models import Study

    if not is_administrator(user) and user.role == Role.TECHNICIAN:
        uploaded = Study.objects.filter(series__instances__uploaded_by=user).values("pk")
        return _group_studies_q(user) & Q(pk__in=uploaded)
    return _group_studies_q(user)


def visible_to(principal: Any) -> QuerySet[Any]:
    """The studies ``principal`` may read: THE visibility rule, for every door.

    A principal is a user (pages, ``/api/v1``, DICOMweb, WADO-URI) or a configured remote
    AE (C-FIND, C-GET, C-MOVE, storage commitment). A user sees the studies of their groups
    (technicians: only those they uploaded into) and the studies shared with them or their
    groups while the share is active; administrators see everything. An AE sees its group's
    studies (every study when it has no group). A group is a namespace: no other rule
    grants access across groups.
    """
    from medvault.archive.models import Study

    if _is_remote_ae(principal):
        return Study.objects.filter(_group_studies_q(principal))
    if not is_active_user(principal) or not user_can(principal, "view"):
        return Study.objects.none()
    if is_administrator(principal):
        return Study.objects.all()
    shared = Study.objects.filter(active_shares_q(principal)).values("pk")
    return Study.objects.filter(_own_studies_q(principal) | Q(pk__in=shared))


def writable_by(principal: Any) -> QuerySet[Any]:
    """The studies ``principal`` may write into (add instances, store analysis exports,
    share): the studies of its own groups. A share never grants writing: shares are
    read-only. An AE writes into its group; a user needs the ``upload`` or ``export`` role
    action."""
    from medvault.archive.models import Study

    if _is_remote_ae(principal):
        return Study.objects.filter(_group_studies_q(principal)) if principal.may_store else Study.objects.none()
    if not (user_can(principal, "upload") or user_can(principal, "export")):
        return Study.objects.none()
    return Study.objects.filter(_group_studies_q(principal))


def study_writable(principal: Any, study: Any) -> bool:
    return writable_by(principal).filter(pk=study.pk).exists()


def study_access_via_share(user: Any, study: Any) -> bool:
    """True when the user sees ``study`` only because of a share (so its use is audited)."""
    from medvault.archive.models import Study

    if is_administrator(user):
        return False
    if Study.objects.filter(_own_studies_q(user), pk=study.pk).exists():
        return False
    return Study.objects.filter(pk=study.pk).filter(active_shares_q(user)).exists()


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
    return user.groups.all().order_by("name")
