"""Thin views: ``POST /api/v1/similar``, the "Find similar" page, compare, thumbnails."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from medvault.accounts.api_auth import api_login_required
from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import user_can
from medvault.retrieval import conf
from medvault.retrieval.query import QueryError, QueryVector, file_query_vector, instance_query_vector
from medvault.retrieval.selectors import (
    Match,
    SimilarFilters,
    SimilarResult,
    similar_instances,
    visible_instance,
)

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _list_param(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    out = tuple(str(v).strip() for v in items if str(v).strip())
    if any(len(v) > 64 for v in out):
        raise QueryError("filter values are at most 64 characters")
    return out


def parse_k(value: Any) -> int:
    if value is None or value == "":
        return conf.default_k()
    try:
        k = int(value)
    except (TypeError, ValueError) as exc:
        raise QueryError("k must be a whole number") from exc
    if not 1 <= k <= conf.max_k():
        raise QueryError(f"k must be between 1 and {conf.max_k()}")
    return k


def parse_filters(params: Any) -> SimilarFilters:
    exclude = params.get("exclude_own_study", params.get("exclude_study", ""))
    if isinstance(exclude, bool):
        exclude_flag = exclude
    else:
        exclude_flag = str(exclude).strip().lower() in _TRUE
    return SimilarFilters(
        modalities=tuple(m.upper() for m in _list_param(params.get("modality"))),
        labels=_list_param(params.get("label")),
        exclude_own_study=exclude_flag,
    )


def thumbnail_url(sop_instance_uid: str) -> str:
    return reverse("retrieval:thumbnail", args=[sop_instance_uid])


def match_json(match: Match, query_sop: str | None) -> dict[str, Any]:
    out = match.as_json()
    out["thumbnail_url"] = thumbnail_url(match.sop_instance_uid)
    out["url"] = (reverse("retrieval_pages:compare", args=[query_sop, match.sop_instance_uid])
                  if query_sop else reverse("retrieval_pages:similar", args=[match.sop_instance_uid]))
    return out


def result_json(result: SimilarResult, qv: QueryVector, query: dict[str, Any], k: int) -> dict[str, Any]:
    return {
        "model": result.model_name,
        "model_version": result.model_version,
        "query": {**query, "label": qv.label, "embedding": qv.source},
        "k": k,
        "method": result.method,
        "search_ms": round(result.search_ms, 3),
        "matches": [match_json(m, query.get("sop_instance_uid")) for m in result.matches],
    }


@api_login_required
@require_POST
def similar_api(request: HttpRequest) -> HttpResponse:
    """Find the instances most similar to an uploaded image or to a stored instance."""
    user = request.user
    if not user_can(user, "search"):
        audit_record(user=user, action="search", outcome="denied", request=request,
                     detail="role may not search")
        return _error("your role may not search the archive", 403)
    try:
        if (request.content_type or "").startswith("application/json"):
            try:
                params = json.loads(request.body or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise QueryError("the request body is not valid JSON") from exc
            if not isinstance(params, dict):
                raise QueryError("the JSON body must be an object")
            upload = None
        else:
            params = request.POST
            upload = request.FILES.get("file") or request.FILES.get("image")
        sop = str(params.get("sop_instance_uid") or "").strip()
        if bool(sop) == bool(upload):
            raise QueryError("give either an uploaded image (field 'file') or a sop_instance_uid")
        if len(sop) > 64:
            raise QueryError("sop_instance_uid is at most 64 characters")
        k = parse_k(params.get("k"))
        filters = parse_filters(params)
        model = str(params.get("model") or "").strip() or None
        query_study_id = None
        if sop:
            instance = visible_instance(user=user, sop_instance_uid=sop)
            if instance is None:
                audit_record(user=user, action="search", outcome="denied", request=request,
                             sop_uid=sop, detail="query instance not found or not visible")
                return _error("no such instance", 404)
            qv = instance_query_vector(instance=instance, model_name=model)
            query_study_id = instance.series.study_id
            query: dict[str, Any] = {"sop_instance_uid": sop}
        else:
            assert upload is not None
            if upload.size and upload.size > 64 * 1024 * 1024:
                raise QueryError("the uploaded file is larger than 64 MiB")
            qv = file_query_vector(data=upload.read(), model_name=model)
            query = {"file": upload.name[:200] if upload.name else ""}
        result = similar_instances(user=user, vector=qv.vector, model_name=qv.model_name,
                                   model_version=qv.model_version, k=k, filters=filters,
                                   query_study_id=query_study_id)
    except QueryError as exc:
        audit_record(user=user, action="search", outcome="error", request=request,
                     detail=exc.message[:200])
        return _error(exc.message, exc.status)
    audit_record(user=user, action="search", request=request, sop_uid=sop,
                 detail=f"similar: model={result.model_name} k={k} matches={len(result.matches)}")
    return JsonResponse(result_json(result, qv, query, k))


# --- pages ----------------------------------------------------------------------------------

def base_template() -> str:
    """The UI's base layout when the UI app provides it, else a minimal one of our own."""
    try:
        get_template("ui/base.html")
        reverse("ui:home")
        return "ui/base.html"
    except (TemplateDoesNotExist, NoReverseMatch):
        return "retrieval/base_minimal.html"


def _page_instance(request: HttpRequest, sop_instance_uid: str) -> Any:
    if not user_can(request.user, "search"):
        audit_record(user=request.user, action="search", outcome="denied", request=request,
                     sop_uid=sop_instance_uid[:64])
        raise Http404("not found")
    instance = visible_instance(user=request.user, sop_instance_uid=sop_instance_uid[:64])
    if instance is None:
        audit_record(user=request.user, action="search", outcome="denied", request=request,
                     sop_uid=sop_instance_uid[:64], detail="not found or not visible")
        raise Http404("not found")
    return instance


@login_required
@require_GET
def similar_page(request: HttpRequest, sop_instance_uid: str) -> HttpResponse:
    """The "Find similar" grid for one archived instance."""
    instance = _page_instance(request, sop_instance_uid)
    context: dict[str, Any] = {"base_template": base_template(), "query": instance, "nav": "studies",
                               "error": "", "result": None, "params": request.GET}
    try:
        k = parse_k(request.GET.get("k"))
        filters = parse_filters(request.GET)
        qv = instance_query_vector(instance=instance,
                                   model_name=(request.GET.get("model") or "").strip() or None)
        result = similar_instances(user=request.user, vector=qv.vector, model_name=qv.model_name,
                                   model_version=qv.model_version, k=k, filters=filters,
                                   query_study_id=instance.series.study_id)
        context.update(result=result, qv=qv, k=k, filters=filters,
                       matches=[match_json(m, instance.sop_instance_uid) for m in result.matches])
        audit_record(user=request.user, action="search", request=request,
                     sop_uid=instance.sop_instance_uid,
                     detail=f"similar page: model={result.model_name} k={k} matches={len(result.matches)}")
    except QueryError as exc:
        context["error"] = exc.message
        audit_record(user=request.user, action="search", outcome="error", request=request,
                     sop_uid=instance.sop_instance_uid, detail=exc.message[:200])
    return render(request, "retrieval/similar.html", context)


@login_required
@require_GET
def compare_page(request: HttpRequest, sop_instance_uid: str, other_uid: str) -> HttpResponse:
    """The query and one match side by side."""
    query = _page_instance(request, sop_instance_uid)
    other = _page_instance(request, other_uid)
    from medvault.retrieval.selectors import instance_embedding

    q_emb = instance_embedding(instance=query)
    o_emb = instance_embedding(instance=other, model_name=q_emb.model_name if q_emb else None)
    score = None
    if q_emb is not None and o_emb is not None and q_emb.model_version == o_emb.model_version:
        from medvault.core.search import vector_decode

        score = float(vector_decode(bytes(q_emb.vector), q_emb.dim, q_emb.dtype)
                      @ vector_decode(bytes(o_emb.vector), o_emb.dim, o_emb.dtype))
    audit_record(user=request.user, action="view", request=request,
                 sop_uid=other.sop_instance_uid, detail=f"compare with {query.sop_instance_uid}")
    return render(request, "retrieval/compare.html", {
        "base_template": base_template(), "nav": "studies", "query": query, "other": other,
        "query_embedding": q_emb, "other_embedding": o_emb, "score": score,
    })


@api_login_required
@require_GET
def thumbnail(request: HttpRequest, sop_instance_uid: str) -> HttpResponse:
    """A small PNG of an instance the user may see (session or token)."""
    instance = None
    if user_can(request.user, "view"):
        instance = visible_instance(user=request.user, sop_instance_uid=sop_instance_uid[:64])
    if instance is None:
        return _error("no such instance", 404)
    from medvault.retrieval.thumbnails import instance_thumbnail

    try:
        data = instance_thumbnail(instance)
    except Exception:  # noqa: BLE001 - any decode failure shows as a missing picture, logged
        log.exception("thumbnail of %s failed", instance.pk)
        return _error("this image cannot be rendered", 404)
    from medvault.archive.access import audit_view

    audit_view(request, instance.series.study, series_uid=instance.series.series_instance_uid,
               sop_uid=instance.sop_instance_uid, detail="similar-image thumbnail",
               dedupe_seconds=600)
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    return response
