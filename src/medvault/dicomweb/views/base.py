"""What every DICOMweb view shares: authentication and role check, OPTIONS, DICOM JSON bodies."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from medvault.accounts.api_auth import api_login_required
from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import user_can
from medvault.archive.models import Instance
from medvault.dicomweb.errors import DicomwebError, not_found
from medvault.dicomweb.negotiation import DICOM_JSON
from medvault.dicomweb.selectors import instances_select

View = Callable[..., HttpResponseBase]


def dicomweb_view(permission: str) -> Callable[[View], View]:
    """Authenticate, check the role's permission, and turn DicomwebError into its status."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not user_can(request.user, permission):
                audit_record(user=request.user, action=permission, outcome="denied", request=request,
                             detail=request.path[:300])
                return JsonResponse({"error": f"your role may not {permission}"}, status=403)
            try:
                return view(request, *args, **kwargs)
            except DicomwebError as exc:
                return exc.response()

        return api_login_required(wrapper)

    return decorate


def with_options(view: View, methods: str) -> View:
    """Answer ``OPTIONS`` on a DICOMweb resource with the methods it allows (PS3.18 8.9).

    Unauthenticated, like a CORS pre-flight: it names methods only, never data.
    """

    allow = ", ".join([*methods.split(), "OPTIONS"])

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "OPTIONS":
            response = HttpResponse(status=200)
            response["Allow"] = allow
            if "POST" in allow:
                response["Accept-Post"] = (
                    'multipart/related; type="application/dicom", '
                    'multipart/related; type="application/dicom+json"'
                )
            return response
        return view(request, *args, **kwargs)

    return wrapper


def base_url(request: HttpRequest) -> str:
    """The absolute URL of ``/dicomweb``, for retrieve URLs in answers."""
    return request.build_absolute_uri("/dicomweb").rstrip("/")


def dicom_json(data: Any, status: int = 200, warnings: list[str] | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, separators=(",", ":")), status=status, content_type=DICOM_JSON
    )
    if warnings:
        response["Warning"] = ", ".join(f'299 medvault "{w}"' for w in warnings)
    return response


def one_instance(request: HttpRequest, study: str, series: str, sop: str) -> Instance:
    """The instance a path names, or 404 unless the user may see it."""
    instance: Instance = instances_select(
        user=request.user, study_uid=study, series_uid=series, sop_uid=sop
    ).get()
    return instance


def pixels_required(inst: Instance) -> Instance:
    """404 for an instance without pixel data (SR, RT plan, waveform, PDF...): it has no
    frames to send or render."""
    if inst.rows is None:
        raise not_found(f"instance {inst.sop_instance_uid} has no pixel data (SOP class {inst.sop_class_uid})")
    return inst
