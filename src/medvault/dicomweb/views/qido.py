"""QIDO-RS (PS3.18 10.6): searches for studies, series and instances."""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_http_methods

from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import is_deidentified_user
from medvault.archive.query.attributes import Level
from medvault.dicomweb import negotiation
from medvault.dicomweb.selectors import qido_query_parse, qido_search, uid_check
from medvault.dicomweb.views.base import base_url, dicom_json, dicomweb_view


def _qido(request: HttpRequest, level: Level, study: str | None = None, series: str | None = None) -> HttpResponseBase:
    if study is not None:
        uid_check(study, "StudyInstanceUID")
    if series is not None:
        uid_check(series, "SeriesInstanceUID")
    negotiation.dicom_json(request)
    query = qido_query_parse(
        level, request.GET, study_uid=study, series_uid=series,
        deidentified=is_deidentified_user(request.user),
    )
    results = qido_search(user=request.user, query=query, base_url=base_url(request))
    audit_record(user=request.user, action="search", request=request, study_uid=study or "",
                 series_uid=series or "", detail=f"QIDO-RS {level.value} {request.GET.urlencode()}"[:500])
    return dicom_json(results, warnings=query.warnings)


@require_http_methods(["GET"])
@dicomweb_view("search")
def all_studies(request: HttpRequest) -> HttpResponseBase:
    return _qido(request, Level.STUDY)


@require_http_methods(["GET"])
@dicomweb_view("search")
def study_series(request: HttpRequest, study: str) -> HttpResponseBase:
    return _qido(request, Level.SERIES, study)


@require_http_methods(["GET"])
@dicomweb_view("search")
def all_series(request: HttpRequest) -> HttpResponseBase:
    return _qido(request, Level.SERIES)


@require_http_methods(["GET"])
@dicomweb_view("search")
def series_instances(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return _qido(request, Level.IMAGE, study, series)


@require_http_methods(["GET"])
@dicomweb_view("search")
def study_instances(request: HttpRequest, study: str) -> HttpResponseBase:
    return _qido(request, Level.IMAGE, study)


@require_http_methods(["GET"])
@dicomweb_view("search")
def all_instances(request: HttpRequest) -> HttpResponseBase:
    return _qido(request, Level.IMAGE)
