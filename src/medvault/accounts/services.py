"""Writes for accounts: approval, membership, shares. Each one is audited."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from medvault.accounts.audit import audit_record
from medvault.accounts.models import AccountStatus, Role, StudyShare


def user_sessions_end(*, user: Any) -> int:
    """Delete every stored session of ``user`` (they are logged out everywhere).

    Called when an account is deactivated or loses its approval, so that reactivating it
    later does not bring the old sessions (and whoever held them) back. Sessions live in the
    database (``SESSION_ENGINE``); each is decoded to find its user, which is fine for a rare
    administrative action. Returns how many were ended.
    """
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session

    ended = 0
    target = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get(SESSION_KEY, "")) == target:
            session.delete()
            ended += 1
    return ended


def user_set_status(*, user: Any, status: str, by: Any = None, request: Any = None) -> None:
    if status not in AccountStatus.values:
        raise ValueError(f"unknown status {status!r}")
    user.status = status
    user.is_active = status != AccountStatus.REJECTED
    user.save(update_fields=["status", "is_active"])
    if status != AccountStatus.APPROVED:
        user_sessions_end(user=user)
    audit_record(user=by, action="user-admin", request=request, detail=f"{user.username}: status={status}")


def user_deactivate(*, user: Any, by: Any = None, request: Any = None) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])
    user_sessions_end(user=user)
    audit_record(user=by, action="user-admin", request=request, detail=f"{user.username}: deactivated")


def user_activate(*, user: Any, by: Any = None, request: Any = None) -> None:
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(user=by, action="user-admin", request=request, detail=f"{user.username}: activated")


def user_set_role(*, user: Any, role: str, by: Any = None, request: Any = None) -> None:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    user.role = role
    user.save(update_fields=["role"])
    audit_record(user=by, action="user-admin", request=request, detail=f"{user.username}: role={role}")


def group_membership_set(*, user: Any, group: Group, member: bool, by: Any = None, request: Any = None) -> None:
    if member:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    audit_record(
        user=by, action="user-admin", request=request,
        detail=f"{user.username}: {'added to' if member else 'removed from'} group {group.name}",
    )


def admin_ensure(*, username: str = "admin", password: str = "") -> tuple[Any, bool, str | None]:
    """Create an administrator unless one exists.

    Returns (the administrator, whether it was created now, the generated password if any).
    """
    User = get_user_model()
    existing = User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).first() or User.objects.filter(
        is_superuser=True, is_active=True
    ).first()
    if existing is not None:
        return existing, False, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(15)
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username)
        user.role = Role.ADMINISTRATOR
        user.status = AccountStatus.APPROVED
        user.is_active = True
        user.is_staff = True
        user.is_superuser = True
        user.full_name = user.full_name or "MedVault administrator"
        user.set_password(password)
        user.save()
    return user, True, generated


def share_create(
    *, study: Any, by: Any, expires_at: datetime, user: Any = None, group: Group | None = None,
    note: str = "", request: Any = None,
) -> StudyShare:
    if (user is None) == (group is None):
        raise ValueError("share with exactly one user or one group")
    if expires_at <= timezone.now():
        raise ValueError("the expiry must be in the future")
    share = StudyShare.objects.create(
        study=study, shared_by=by, shared_with_user=user, shared_with_group=group,
        expires_at=expires_at, note=note[:200],
    )
    audit_record(
        user=by, action="share", request=request, patient_id=study.patient.patient_id,
        study_uid=study.study_instance_uid,
        detail=f"shared read-only with {share.recipient} until {expires_at:%Y-%m-%d %H:%M}",
    )
    return share


def share_revoke(*, share: StudyShare, by: Any, request: Any = None) -> None:
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.revoked_by = by
        share.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(
        user=by, action="share-revoke", request=request,
        patient_id=share.study.patient.patient_id, study_uid=share.study.study_instance_uid,
        detail=f"revoked share with {share.recipient}",
    )
