"""Which studies a principal may read and write, and lookups that never leak.

THE visibility rule for every door (pages, ``/api/v1``, DICOMweb, WADO-URI, DIMSE):
``visible_to`` for reads and ``writable_by`` for writes. The role rules (what a role may do
at all) are ``accounts.permissions``; this module adds which studies. The ``*_or_404``
lookups answer 404 (audited) unless the user may see the object; ``audit_view`` records a
view of patient data and the use of a share.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from medvault.accounts.audit import audit_record
from medvault.accounts.models import AuditRecord, Role
from medvault.accounts.permissions import (
    active_shares_q,
    is_active_user,
    is_administrator,
    user_can,
    user_group_ids,
)
from medvault.archive.models import Instance, Series, Study


def _is_remote_ae(principal: Any) -> bool:
    """A configured DICOM peer (``dimse.models.RemoteAE`` says ``is_dicom_peer``); archive
    sits below the DICOM door, so it asks the principal instead of importing its model."""
    return bool(getattr(principal, "is_dicom_peer", False))


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
    if _is_remote_ae(principal):
        return Study.objects.filter(_group_studies_q(principal)) if principal.may_store else Study.objects.none()
    if not (user_can(principal, "upload") or user_can(principal, "export")):
        return Study.objects.none()
    return Study.objects.filter(_group_studies_q(principal))


def study_writable(principal: Any, study: Any) -> bool:
    return writable_by(principal).filter(pk=study.pk).exists()


def study_access_via_share(user: Any, study: Any) -> bool:
    """True when the user sees ``study`` only because of a share (so its use is audited)."""
    if is_administrator(user):
        return False
    if Study.objects.filter(_own_studies_q(user), pk=study.pk).exists():
        return False
    return Study.objects.filter(pk=study.pk).filter(active_shares_q(user)).exists()


NOT_FOUND = "There is no such study, or you do not have access to it."


def _denied(request: HttpRequest, what: str, **uids: str) -> Http404:
    audit_record(user=request.user, action="view", outcome="denied", request=request,
                 detail=f"{what} not visible: {request.path}", **uids)
    return Http404(NOT_FOUND)


def audit_view(request: HttpRequest, study: Any, *, action: str = "view", series_uid: str = "",
               sop_uid: str = "", detail: str = "", dedupe_seconds: int = 0) -> None:
    """Audit a view of patient data (and the use of a share when that is what grants it).

    ``dedupe_seconds``: skip when the same user viewed the same object that recently
    (scrolling a series requests many frames; one record per instance per 10 minutes).
    """
    user: Any = request.user  # authenticated: every caller is behind a login check
    if dedupe_seconds:
        since = timezone.now() - timedelta(seconds=dedupe_seconds)
        recent = AuditRecord.objects.filter(
            user=user, action=action, outcome="ok", study_uid=study.study_instance_uid,
            series_uid=series_uid, sop_uid=sop_uid, created_at__gte=since,
        )
        if recent.exists():
            return
    uids = {"patient_id": study.patient.patient_id, "study_uid": study.study_instance_uid,
            "series_uid": series_uid, "sop_uid": sop_uid}
    audit_record(user=user, action=action, request=request, detail=detail, **uids)
    if study_access_via_share(user, study):
        audit_record(user=user, action="share-use", request=request,
                     detail=f"{action} through a share", **uids)


def visible_study_or_404(request: HttpRequest, study_uid: str) -> Any:
    study = visible_to(request.user).select_related("patient", "group").filter(
        study_instance_uid=study_uid
    ).first()
    if study is None:
        raise _denied(request, "study", study_uid=study_uid[:64])
    return study


def visible_series_or_404(request: HttpRequest, series_uid: str) -> Any:
    series = Series.objects.select_related("study__patient").filter(
        series_instance_uid=series_uid, study__in=visible_to(request.user).values("pk")
    ).first()
    if series is None:
        raise _denied(request, "series", series_uid=series_uid[:64])
    return series


def visible_instance_or_404(request: HttpRequest, sop_uid: str) -> Any:
    instance = Instance.objects.select_related("series__study__patient").filter(
        sop_instance_uid=sop_uid, series__study__in=visible_to(request.user).values("pk")
    ).first()
    if instance is None:
        raise _denied(request, "instance", sop_uid=sop_uid[:64])
    return instance
