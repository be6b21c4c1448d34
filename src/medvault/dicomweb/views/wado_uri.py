"""WADO-URI (PS3.18 9): one instance by query parameters, as a DICOM file or rendered."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_http_methods

from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import is_deidentified_user, user_can
from medvault.dicomweb.errors import bad_request, not_acceptable
from medvault.dicomweb.rendering import RenderError, viewport_parse, window_parse
from medvault.dicomweb.views.base import dicomweb_view, one_instance
from medvault.dicomweb.views.rendered import frame_rendered_bytes
from medvault.dicomweb.views.wado import effective_syntax, instance_bytes


@require_http_methods(["GET"])
@dicomweb_view("view")
def wado_uri(request: HttpRequest) -> HttpResponseBase:
    params = request.GET
    if params.get("requestType", "") != "WADO":
        raise bad_request("requestType must be WADO")
    missing = [k for k in ("studyUID", "seriesUID", "objectUID") if not params.get(k)]
    if missing:
        raise bad_request("missing parameter(s): " + ", ".join(missing))
    inst = one_instance(request, params["studyUID"], params["seriesUID"], params["objectUID"])
    content_type = (params.get("contentType") or "image/jpeg").split(",")[0].strip().lower()
    if content_type == "application/dicom":
        if not user_can(request.user, "download"):
            # The role table: researchers (and any role without "download") get no DICOM files.
            audit_record(user=request.user, action="download", outcome="denied", request=request,
                         sop_uid=params["objectUID"][:64], detail="WADO-URI application/dicom")
            return JsonResponse({"error": "your role may not download DICOM files"}, status=403)
        asked = params.get("transferSyntax") or "*"
        syntax = effective_syntax(asked, inst.transfer_syntax_uid)
        if syntax is None:
            raise not_acceptable(f"transfer syntax {asked} is not available")
        audit_record(user=request.user, action="download", request=request,
                     study_uid=params["studyUID"], series_uid=params["seriesUID"],
                     sop_uid=params["objectUID"], detail="WADO-URI application/dicom")
        return HttpResponse(
            instance_bytes(inst, syntax, is_deidentified_user(request.user)),
            content_type="application/dicom",
        )
    if content_type not in ("image/jpeg", "image/png"):
        raise not_acceptable(f"contentType {content_type!r} is not supported")
    try:
        frame = int(params.get("frameNumber", "1"))
        window = None
        if params.get("windowCenter") and params.get("windowWidth"):
            window = window_parse(f"{params['windowCenter']},{params['windowWidth']}")
        viewport = None
        if params.get("rows") or params.get("columns"):
            viewport = viewport_parse(f"{params.get('columns', '0')},{params.get('rows', '0')}")
    except (RenderError, ValueError) as exc:
        raise bad_request(str(exc)) from None
    data = frame_rendered_bytes(request, inst, frame=frame, media_type=content_type, window=window,
                                viewport=viewport, detail="WADO-URI rendered")
    return HttpResponse(data, content_type=content_type)
