"""Study/series/instance lookups that never leak: 404 (audited) unless the user may see it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import Http404, HttpRequest
from django.utils import timezone

from medvault.accounts.audit import audit_record
from medvault.accounts.models import AuditRecord
from medvault.accounts.permissions import study_access_via_share, visible_to

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
    user = request.user
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
    from medvault.archive.models import Series

    series = Series.objects.select_related("study__patient").filter(
        series_instance_uid=series_uid, study__in=visible_to(request.user).values("pk")
    ).first()
    if series is None:
        raise _denied(request, "series", series_uid=series_uid[:64])
    return series


def visible_instance_or_404(request: HttpRequest, sop_uid: str) -> Any:
    from medvault.archive.models import Instance

    instance = Instance.objects.select_related("series__study__patient").filter(
        sop_instance_uid=sop_uid, series__study__in=visible_to(request.user).values("pk")
    ).first()
    if instance is None:
        raise _denied(request, "instance", sop_uid=sop_uid[:64])
    return instance
