"""The analysis JSON API (thin: parse, call a service or selector, render).

POST /api/v1/analyses                      queue a job -> 202 {"job": {...}}
GET  /api/v1/analyses?study=|instance=|job=  results and job states the user may see
GET  /api/v1/analyses/<id>                 one result (with ``similar_url``, the "Find similar" page)
GET  /api/v1/analyses/<id>/heatmap.png     the overlay (transparent PNG, image size)
POST /api/v1/analyses/<id>/export          store a Secondary Capture with the overlay burned in
GET  /api/v1/models/<name>                 the model card: intended use, call rule, figures, limits
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from medvault.accounts.api_auth import api_login_required
from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import is_deidentified_user, user_can
from medvault.analysis import selectors, services
from medvault.analysis.models import DISCLAIMER
from medvault.archive.access import visible_to
from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance
from medvault.archive.outcomes import StoreStatus

_LIST_LIMIT = 500


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _with_similar_link(data: dict[str, Any], user: Any) -> dict[str, Any]:
    """Add ``similar_url``: the "Find similar" grid for the analysed image, searched with this
    result's model; null when the analysis was refused (no embedding), the user's role may
    not search, or the retrieval pages are not installed."""
    data["similar_url"] = None
    if data.get("refused") or not user_can(user, "search"):
        return data
    from urllib.parse import urlencode

    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("retrieval_pages:similar", args=[data["sop_instance_uid"]])
    except NoReverseMatch:
        return data
    data["similar_url"] = f"{url}?{urlencode({'model': data['model']})}"
    return data


def _method_not_allowed(allowed: str) -> JsonResponse:
    response = _error(f"method not allowed; use {allowed}", 405)
    response["Allow"] = allowed
    return response


@api_login_required
def analyses(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _analysis_create(request)
    if request.method in ("GET", "HEAD"):
        return _analysis_list(request)
    return _method_not_allowed("GET, POST")


def _analysis_create(request: HttpRequest) -> HttpResponse:
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type.startswith("application/json") or not request.POST:
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error("the body is not valid JSON", 400)
    else:
        body = request.POST.dict()
    if not isinstance(body, dict):
        return _error("the body must be a JSON object", 400)
    try:
        job = services.analysis_request(
            user=request.user,
            sop_instance_uid=body.get("sop_instance_uid", ""),
            model_name=body.get("model", ""),
            request=request,
        )
    except services.AnalysisError as exc:
        return _error(str(exc), exc.status)
    job = selectors.jobs_visible_to(request.user).get(pk=job.pk)
    response = JsonResponse(
        {
            "disclaimer": DISCLAIMER,
            "job": selectors.job_as_json(job),
            "status_url": f"/api/v1/analyses?job={job.pk}",
        },
        status=202,
    )
    response["Location"] = f"/api/v1/analyses?job={job.pk}"
    return response


def _analysis_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user_can(user, "view"):
        return _error("you may not view analyses", 403)
    deidentified = is_deidentified_user(user)
    study_uid = request.GET.get("study", "").strip()
    instance_uid = request.GET.get("instance", "").strip()
    job_param = request.GET.get("job", "").strip()
    results = selectors.results_visible_to(user)
    jobs = selectors.jobs_visible_to(user)
    audit: dict[str, str] = {}
    for name, value in (("study", study_uid), ("instance", instance_uid)):
        if value and not services.is_uid(value):
            return _error(f"{name} must be a DICOM UID (digits and dots, at most 64)", 400)
    if job_param:
        if not (job_param.isascii() and job_param.isdigit() and len(job_param) <= 18):
            return _error("job must be a number", 400)
        job = jobs.filter(pk=int(job_param)).first()
        if job is None:
            return _error("no such job", 404)
        results = results.filter(job_id=job.pk)
        jobs = jobs.filter(pk=job.pk)
        audit = {
            "sop_uid": job.instance.sop_instance_uid,
            "study_uid": job.instance.series.study.study_instance_uid,
        }
    if instance_uid:
        instance = (
            Instance.objects.select_related("series__study")
            .filter(sop_instance_uid=instance_uid, series__study__in=visible_to(user))
            .first()
        )
        if instance is None:
            return _error("no such instance", 404)
        results = results.filter(instance=instance)
        jobs = jobs.filter(instance=instance)
        audit = {
            "sop_uid": instance.sop_instance_uid,
            "study_uid": instance.series.study.study_instance_uid,
        }
    if study_uid:
        study = visible_to(user).filter(study_instance_uid=study_uid).first()
        if study is None:
            return _error("no such study", 404)
        results = results.filter(instance__series__study=study)
        jobs = jobs.filter(instance__series__study=study)
        audit.setdefault("study_uid", study.study_instance_uid)
    shown = list(results[:_LIST_LIMIT])
    # Every answer that carries patient data is audited, the unfiltered list too.
    audit_record(user=user, action="view", request=request,
                 detail=f"analysis results ({len(shown)} shown): {request.GET.urlencode()[:200]}",
                 **audit)
    return JsonResponse(
        {
            "disclaimer": DISCLAIMER,
            "results": [
                _with_similar_link(selectors.result_as_json(r, deidentified=deidentified), user)
                for r in shown
            ],
            "jobs": [selectors.job_as_json(j) for j in jobs[:_LIST_LIMIT]],
        }
    )


def _result_audit(request: HttpRequest, result: Any, what: str) -> None:
    from medvault.archive.access import audit_view

    instance = result.instance
    audit_view(request, instance.series.study, series_uid=instance.series.series_instance_uid,
               sop_uid=instance.sop_instance_uid, detail=f"{what} of analysis result {result.pk}")


@api_login_required
def analysis_detail(request: HttpRequest, result_id: int) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    result = selectors.result_visible(user=request.user, result_id=result_id)
    if result is None:
        return _error("no such analysis", 404)
    _result_audit(request, result, "detail")
    return JsonResponse(_with_similar_link(
        selectors.result_as_json(result, deidentified=is_deidentified_user(request.user)), request.user))


@api_login_required
def analysis_heatmap(request: HttpRequest, result_id: int) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    result = selectors.result_visible(user=request.user, result_id=result_id)
    if result is None:
        return _error("no such analysis", 404)
    if not result.heatmap_key:
        return _error("this analysis has no heat-map", 404)
    from medvault.core.blobs import BlobNotFound

    try:
        png = blob_store().get(result.heatmap_key)
    except BlobNotFound:
        return _error("the heat-map is missing from the blob store", 500)
    _result_audit(request, result, "heat-map")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    return response


@api_login_required
def analysis_export(request: HttpRequest, result_id: int) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed("POST")
    user: Any = request.user
    result = selectors.result_visible(user=user, result_id=result_id)
    if result is None:
        return _error("no such analysis", 404)
    if not (user_can(user, "export") and user_can(user, "upload")):
        audit_record(
            user=user,
            action="export",
            outcome="denied",
            request=request,
            sop_uid=result.instance.sop_instance_uid,
            detail=f"analysis result {result.pk} as secondary capture",
        )
        return _error("you may not export analyses into the archive", 403)
    try:
        stored = services.result_export(result=result, user=user, request=request)
    except services.AnalysisError as exc:
        return _error(str(exc), exc.status)
    if stored.status is StoreStatus.REJECTED:
        return _error(f"the archive rejected the export: {stored.reason}", 422)
    return JsonResponse(
        {
            "disclaimer": DISCLAIMER,
            "status": stored.status,
            "sop_instance_uid": stored.sop_instance_uid,
            "series_instance_uid": (
                stored.instance.series.series_instance_uid if stored.instance else None
            ),
            "study_instance_uid": result.instance.series.study.study_instance_uid,
        },
        status=201,
    )


@api_login_required
def model_card(request: HttpRequest, model_name: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    card = selectors.model_card(model_name)
    if card is None:
        return _error("no such model", 404)
    return JsonResponse(card)
