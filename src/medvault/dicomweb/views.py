"""DICOMweb (PS3.18) views: thin; parsing and negotiation here, logic in selectors/services."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from medvault.accounts.api_auth import api_login_required
from medvault.accounts.audit import audit_record
from medvault.accounts.deid import deidentify_dataset
from medvault.accounts.permissions import GroupChoiceError, ingest_group, is_deidentified_user, user_can
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_dataset, instance_part10_bytes, instance_pixels
from medvault.core.dicom.multipart import (
    MultipartError,
    accept_parse,
    boundary_new,
    media_type_parse,
    multipart_build,
    multipart_content_type,
    multipart_parse,
)
from medvault.archive.query.attributes import Level
from medvault.dicomweb.errors import (
    DicomwebError,
    bad_request,
    not_acceptable,
    not_found,
    unsupported_media_type,
)
from medvault.dicomweb.rendering import RenderError, frame_render, viewport_parse, window_parse
from medvault.dicomweb.selectors import (
    instances_select,
    metadata_json_text,
    metadata_select,
    qido_query_parse,
    qido_search,
    uid_check,
)
from medvault.dicomweb.services import JsonFailure, StowJsonError, stow_json_parts, stow_store

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Transfer syntaxes few peers decode (JPEG XL, added in 2024): "*" sends these decompressed.
_UNCOMMON_SYNTAXES = {"1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112"}
DICOM_JSON = "application/dicom+json"


def dicomweb_view(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Authenticate, check the role's permission, and turn DicomwebError into its status."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
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


def with_options(view: Callable[..., HttpResponse], methods: str) -> Callable[..., HttpResponse]:
    """Answer ``OPTIONS`` on a DICOMweb resource with the methods it allows (PS3.18 8.9).

    Unauthenticated, like a CORS pre-flight: it names methods only, never data.
    """

    allow = ", ".join([*methods.split(), "OPTIONS"])

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
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


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/dicomweb").rstrip("/")


def _dicom_json(data: Any, status: int = 200, warnings: list[str] | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, separators=(",", ":")), status=status, content_type=DICOM_JSON
    )
    if warnings:
        response["Warning"] = ", ".join(f'299 medvault "{w}"' for w in warnings)
    return response


# --- QIDO-RS ---------------------------------------------------------------------------


def _qido(request: HttpRequest, level: Level, study: str | None = None, series: str | None = None) -> HttpResponse:
    if study is not None:
        uid_check(study, "StudyInstanceUID")
    if series is not None:
        uid_check(series, "SeriesInstanceUID")
    _accept_json(request)
    query = qido_query_parse(
        level, request.GET, study_uid=study, series_uid=series,
        deidentified=is_deidentified_user(request.user),
    )
    results = qido_search(user=request.user, query=query, base_url=_base_url(request))
    audit_record(user=request.user, action="search", request=request, study_uid=study or "",
                 series_uid=series or "", detail=f"QIDO-RS {level.value} {request.GET.urlencode()}"[:500])
    return _dicom_json(results, warnings=query.warnings)


def _accept_json(request: HttpRequest) -> None:
    accept = request.META.get("HTTP_ACCEPT", "")
    if not accept:
        return
    for media in accept_parse(accept):
        if media.type in (DICOM_JSON, "application/json", "*/*", "application/*"):
            return
    raise not_acceptable(f"QIDO-RS answers {DICOM_JSON}; Accept was {accept[:100]!r}")


@require_http_methods(["GET"])
@dicomweb_view("search")
def _studies_get(request: HttpRequest) -> HttpResponse:
    return _qido(request, Level.STUDY)


@csrf_exempt
def studies(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return stow(request)
    return _studies_get(request)


@csrf_exempt
def study(request: HttpRequest, study: str) -> HttpResponse:
    if request.method == "POST":
        return stow(request, study=study)
    return retrieve_study(request, study=study)


@require_http_methods(["GET"])
@dicomweb_view("search")
def study_series(request: HttpRequest, study: str) -> HttpResponse:
    return _qido(request, Level.SERIES, study)


@require_http_methods(["GET"])
@dicomweb_view("search")
def all_series(request: HttpRequest) -> HttpResponse:
    return _qido(request, Level.SERIES)


@require_http_methods(["GET"])
@dicomweb_view("search")
def series_instances(request: HttpRequest, study: str, series: str) -> HttpResponse:
    return _qido(request, Level.IMAGE, study, series)


@require_http_methods(["GET"])
@dicomweb_view("search")
def study_instances(request: HttpRequest, study: str) -> HttpResponse:
    return _qido(request, Level.IMAGE, study)


@require_http_methods(["GET"])
@dicomweb_view("search")
def all_instances(request: HttpRequest) -> HttpResponse:
    return _qido(request, Level.IMAGE)


# --- STOW-RS ---------------------------------------------------------------------------


def _request_body(request: HttpRequest) -> bytes:
    """The request body, also when it came with ``Transfer-Encoding: chunked``.

    Django reads only ``Content-Length`` bytes; a server that de-chunks (gunicorn) marks its
    input stream with ``wsgi.input_terminated``, and then the stream is read to its end.
    """
    body = request.body
    if body or "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return body
    if not request.environ.get("wsgi.input_terminated"):
        raise DicomwebError(
            411, "this server cannot read chunked request bodies; send a Content-Length or run "
            "MedVault under gunicorn (medvault serve)",
        )
    limit = int(settings.MEDVAULT_MAX_UPLOAD_BYTES)
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise DicomwebError(413, f"the request body is larger than {limit} bytes")
    return bytes(data)


def _stow_group(request: HttpRequest) -> Any:
    """The group STOW-RS stores into: ``?group=NAME`` (one of the user's), or the user's
    default group (their only one). Never guessed among several."""
    requested = request.GET.get("group", "").strip()
    try:
        return ingest_group(request.user, requested or None)
    except GroupChoiceError as exc:
        audit_record(user=request.user, action="upload", outcome="denied", request=request,
                     detail=f"STOW-RS group {requested[:150]!r}: {exc}"[:500])
        raise DicomwebError(403 if requested else 400, str(exc)) from None


@require_http_methods(["POST"])
@dicomweb_view("upload")
def stow(request: HttpRequest, study: str | None = None) -> HttpResponse:
    if study is not None:
        uid_check(study, "StudyInstanceUID")
    content_type = request.META.get("CONTENT_TYPE", "")
    media = media_type_parse(content_type)
    if media.type != "multipart/related":
        raise unsupported_media_type(
            f"STOW-RS takes multipart/related; type=\"application/dicom\", not {media.type or 'nothing'!r}"
        )
    part_type = media.params.get("type", "application/dicom").strip('"').lower()
    if part_type not in ("application/dicom", DICOM_JSON):
        raise unsupported_media_type(
            f"STOW-RS takes application/dicom parts, or {DICOM_JSON} metadata with bulk data "
            f"parts; not {part_type!r}"
        )
    body = _request_body(request)
    try:
        parts = multipart_parse(body, content_type)
    except MultipartError as exc:
        raise bad_request(f"malformed multipart body: {exc}") from None
    failures: list[JsonFailure] = []
    if part_type == DICOM_JSON:
        try:
            parts, failures = stow_json_parts(parts)
        except StowJsonError as exc:
            raise bad_request(str(exc)) from None
    group = _stow_group(request)
    outcome = stow_store(
        parts=parts, user=request.user, group=group, study_uid=study,
        base_url=_base_url(request), request=request, failures=failures,
    )
    return _dicom_json(outcome.body, status=outcome.status)


# --- WADO-RS ---------------------------------------------------------------------------


def _dicom_syntax(request: HttpRequest) -> str:
    """The transfer syntax asked for through Accept: ``*`` (stored) or a UID (406 if none fits)."""
    accept = request.META.get("HTTP_ACCEPT", "") or "*/*"
    for media in accept_parse(accept):
        if media.type in ("*/*", "multipart/*"):
            return "*"
        if media.type == "multipart/related":
            part = media.params.get("type", "application/dicom").lower()
            if part in ("application/dicom", "*/*", "application/*"):
                return media.params.get("transfer-syntax", EXPLICIT_LE if part == "application/dicom" else "*")
        if media.type == "application/dicom":
            return media.params.get("transfer-syntax", EXPLICIT_LE)
    raise not_acceptable(
        f"instances are served as multipart/related; type=\"application/dicom\"; Accept was {accept[:100]!r}"
    )


def _effective_syntax(asked: str, stored: str) -> str | None:
    if asked == "*":
        return EXPLICIT_LE if stored in _UNCOMMON_SYNTAXES else stored
    if asked in (stored, EXPLICIT_LE):
        return asked
    return None


def _instance_bytes(instance: Instance, syntax: str, deidentified: bool) -> bytes:
    if not deidentified:
        return instance_part10_bytes(instance=instance, transfer_syntax_uid=syntax)
    ds = deidentify_dataset(instance_dataset(instance=instance, transfer_syntax_uid=syntax))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _retrieve(request: HttpRequest, study: str, series: str | None = None, sop: str | None = None) -> HttpResponse:
    asked = _dicom_syntax(request)
    instances = list(instances_select(user=request.user, study_uid=study, series_uid=series, sop_uid=sop))
    plan = []
    for inst in instances:
        syntax = _effective_syntax(asked, inst.transfer_syntax_uid)
        if syntax is None:
            raise not_acceptable(
                f"transfer syntax {asked} is not available; ask for * (as stored, "
                f"{inst.transfer_syntax_uid}) or {EXPLICIT_LE}"
            )
        plan.append((inst, syntax))
    deidentified = is_deidentified_user(request.user)
    first = instances[0]
    audit_record(user=request.user, action="download", request=request,
                 patient_id=first.series.study.patient.patient_id if not deidentified else "",
                 study_uid=study, series_uid=series or "", sop_uid=sop or "",
                 detail=f"WADO-RS {len(instances)} instance(s)")
    boundary = boundary_new()

    def parts() -> Iterator[tuple[bytes, str]]:
        for inst, syntax in plan:
            yield _instance_bytes(inst, syntax, deidentified), f"application/dicom; transfer-syntax={syntax}"

    response = StreamingHttpResponse(
        multipart_build(parts(), boundary),
        content_type=multipart_content_type(boundary, "application/dicom"),
    )
    return response


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_study(request: HttpRequest, study: str) -> HttpResponse:
    return _retrieve(request, study)


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_series(request: HttpRequest, study: str, series: str) -> HttpResponse:
    return _retrieve(request, study, series)


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_instance(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponse:
    return _retrieve(request, study, series, instance)


def _metadata(request: HttpRequest, study: str, series: str | None = None, sop: str | None = None) -> HttpResponse:
    _accept_json(request)
    instances = instances_select(user=request.user, study_uid=study, series_uid=series, sop_uid=sop)
    audit_record(user=request.user, action="view", request=request, study_uid=study,
                 series_uid=series or "", sop_uid=sop or "", detail="WADO-RS metadata")
    if is_deidentified_user(request.user):
        return _dicom_json(metadata_select(user=request.user, instances=instances, base_url=_base_url(request)))
    text = metadata_json_text(instances=instances, base_url=_base_url(request))
    return HttpResponse(text, content_type=DICOM_JSON)


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_metadata(request: HttpRequest, study: str) -> HttpResponse:
    return _metadata(request, study)


@require_http_methods(["GET"])
@dicomweb_view("view")
def series_metadata(request: HttpRequest, study: str, series: str) -> HttpResponse:
    return _metadata(request, study, series)


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_metadata(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponse:
    return _metadata(request, study, series, instance)


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise bad_request(f"frame list {text[:50]!r} must be comma-separated numbers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise bad_request("frame numbers start at 1")
    if any(n > count for n in numbers):
        raise not_found(f"the instance has {count} frame(s)")
    return numbers


def _frame_bytes(pixels: np.ndarray) -> bytes:
    array = np.ascontiguousarray(pixels)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()


def _octet_accepted(request: HttpRequest) -> None:
    accept = request.META.get("HTTP_ACCEPT", "") or "*/*"
    for media in accept_parse(accept):
        if media.type in ("*/*", "application/octet-stream", "multipart/*"):
            return
        if media.type == "multipart/related":
            part = media.params.get("type", "application/octet-stream").lower()
            ts = media.params.get("transfer-syntax", EXPLICIT_LE)
            if part in ("application/octet-stream", "*/*", "application/*") and ts in ("*", EXPLICIT_LE):
                return
    raise not_acceptable(
        "frames are served uncompressed as multipart/related; type=\"application/octet-stream\""
    )


def _one_instance(request: HttpRequest, study: str, series: str, sop: str) -> Instance:
    return instances_select(user=request.user, study_uid=study, series_uid=series, sop_uid=sop).get()


def _pixels_required(inst: Instance) -> Instance:
    """404 for an instance without pixel data (SR, RT plan, waveform, PDF...): it has no
    frames to send or render."""
    if inst.rows is None:
        raise not_found(f"instance {inst.sop_instance_uid} has no pixel data (SOP class {inst.sop_class_uid})")
    return inst


def _with_pixels(instances: Any) -> list[Instance]:
    """The instances of a study or series that have pixels; 404 when none has."""
    found = [inst for inst in instances if inst.rows is not None]
    if not found:
        raise not_found("no instance here has pixels: no pixel data to render")
    return found


@require_http_methods(["GET"])
@dicomweb_view("view")
def frames(request: HttpRequest, study: str, series: str, instance: str, frames: str) -> HttpResponse:
    _octet_accepted(request)
    inst = _pixels_required(_one_instance(request, study, series, instance))
    numbers = _frame_numbers(frames, inst.number_of_frames or 1)
    audit_record(user=request.user, action="view", request=request, study_uid=study,
                 series_uid=series, sop_uid=instance, detail=f"WADO-RS frames {frames[:100]}")
    boundary = boundary_new()

    def parts() -> Iterator[tuple[bytes, str]]:
        for n in numbers:
            data = _frame_bytes(instance_pixels(instance=inst, frame=n - 1))
            yield data, f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"

    return StreamingHttpResponse(
        multipart_build(parts(), boundary),
        content_type=multipart_content_type(boundary, "application/octet-stream"),
    )


@require_http_methods(["GET"])
@dicomweb_view("view")
def bulkdata(request: HttpRequest, study: str, series: str, instance: str, tag: str) -> HttpResponse:
    _octet_accepted(request)
    inst = _one_instance(request, study, series, instance)
    try:
        tag_value = int(tag, 16)
    except ValueError:
        raise bad_request(f"bulk data tag {tag[:20]!r} must be 8 hex digits") from None
    if len(tag) != 8:
        raise bad_request("bulk data tag must be 8 hex digits")
    if tag_value == 0x7FE00010:
        _pixels_required(inst)
        count = inst.number_of_frames or 1
        data = b"".join(_frame_bytes(instance_pixels(instance=inst, frame=i)) for i in range(count))
    else:
        ds = instance_dataset(instance=inst, transfer_syntax_uid=EXPLICIT_LE)
        if tag_value not in ds or not isinstance(ds[tag_value].value, bytes):
            raise not_found(f"instance has no bulk data at {tag.upper()}")
        data = ds[tag_value].value
    audit_record(user=request.user, action="view", request=request, study_uid=study,
                 series_uid=series, sop_uid=instance, detail=f"WADO-RS bulkdata {tag.upper()}")
    boundary = boundary_new()
    return HttpResponse(
        b"".join(multipart_build([(data, "application/octet-stream")], boundary)),
        content_type=multipart_content_type(boundary, "application/octet-stream"),
    )


def _render_media_type(request: HttpRequest) -> str:
    accept = request.GET.get("accept") or request.META.get("HTTP_ACCEPT", "") or "image/jpeg"
    for media in accept_parse(accept):
        if media.type in ("image/jpeg", "image/png"):
            return media.type
        if media.type in ("*/*", "image/*"):
            return "image/jpeg"
    raise not_acceptable(f"rendered images are image/jpeg or image/png; Accept was {accept[:100]!r}")


def _render_params(request: HttpRequest) -> tuple[Any, Any, int]:
    """The ``window``, ``viewport`` and ``quality`` query parameters of a rendered request."""
    try:
        window = window_parse(request.GET["window"]) if request.GET.get("window") else None
        viewport = viewport_parse(request.GET["viewport"]) if request.GET.get("viewport") else None
        quality = int(request.GET.get("quality", "90"))
    except (RenderError, ValueError) as exc:
        raise bad_request(str(exc)) from None
    return window, viewport, quality


def _render(request: HttpRequest, inst: Instance, frame: int, thumbnail: bool) -> HttpResponse:
    media_type = _render_media_type(request)
    window, viewport, quality = _render_params(request)
    if thumbnail and viewport is None:
        viewport = (128, 128)
    _pixels_required(inst)
    if frame < 1 or frame > (inst.number_of_frames or 1):
        raise not_found(f"the instance has {inst.number_of_frames or 1} frame(s)")
    meta = Instance.objects.values_list("metadata", flat=True).get(pk=inst.pk)
    pixels = instance_pixels(instance=inst, frame=frame - 1)
    try:
        data = frame_render(pixels, meta, window=window, viewport=viewport,
                            media_type=media_type, quality=quality)
    except RenderError as exc:
        raise bad_request(str(exc)) from None
    audit_record(user=request.user, action="view", request=request,
                 study_uid=inst.series.study.study_instance_uid,
                 series_uid=inst.series.series_instance_uid, sop_uid=inst.sop_instance_uid,
                 detail="WADO-RS thumbnail" if thumbnail else "WADO-RS rendered")
    response = HttpResponse(data, content_type=media_type)
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    return response


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_rendered(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponse:
    return _render(request, _one_instance(request, study, series, instance), 1, False)


@require_http_methods(["GET"])
@dicomweb_view("view")
def frame_rendered(request: HttpRequest, study: str, series: str, instance: str, frames: str) -> HttpResponse:
    inst = _one_instance(request, study, series, instance)
    numbers = _frame_numbers(frames, inst.number_of_frames or 1)
    return _render(request, inst, numbers[0], False)


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_thumbnail(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponse:
    return _render(request, _one_instance(request, study, series, instance), 1, True)


def _rendered_many(request: HttpRequest, instances: list[Instance]) -> HttpResponse:
    """Rendered study or series (PS3.18 10.4.1): every frame of every instance, one part each,
    as multipart/related of image/jpeg (default) or image/png."""
    accept = request.GET.get("accept") or request.META.get("HTTP_ACCEPT", "") or "*/*"
    media_type = ""
    for media in accept_parse(accept):
        inner = media.params.get("type", "").strip('"').lower() if media.type == "multipart/related" else media.type
        if inner in ("image/jpeg", "image/png"):
            media_type = inner
            break
        if inner in ("", "*/*", "image/*") and media.type in ("multipart/related", "*/*", "image/*"):
            media_type = "image/jpeg"
            break
    if not media_type:
        raise not_acceptable(
            'rendered studies and series are multipart/related; type="image/jpeg" or '
            f'type="image/png"; Accept was {accept[:100]!r}'
        )
    window, viewport, quality = _render_params(request)
    metas = dict(Instance.objects.filter(pk__in=[i.pk for i in instances]).values_list("pk", "metadata"))
    first = instances[0]
    audit_record(user=request.user, action="view", request=request,
                 study_uid=first.series.study.study_instance_uid,
                 series_uid=first.series.series_instance_uid if len({i.series_id for i in instances}) == 1 else "",
                 detail=f"WADO-RS rendered {len(instances)} instances")
    boundary = boundary_new()

    def parts() -> Iterator[tuple[bytes, str]]:
        for inst in instances:
            if inst.rows is None:
                continue  # no pixels (SR, RT plan, waveform...): nothing to render
            for index in range(inst.number_of_frames or 1):
                pixels = instance_pixels(instance=inst, frame=index)
                try:
                    data = frame_render(pixels, metas[inst.pk], window=window, viewport=viewport,
                                        media_type=media_type, quality=quality)
                except RenderError:
                    continue  # an image that cannot be rendered (e.g. no pixels) is left out
                yield data, media_type

    return StreamingHttpResponse(
        multipart_build(parts(), boundary),
        content_type=multipart_content_type(boundary, media_type),
    )


@require_http_methods(["GET"])
@dicomweb_view("view")
def series_rendered(request: HttpRequest, study: str, series: str) -> HttpResponse:
    return _rendered_many(request, list(instances_select(user=request.user, study_uid=study, series_uid=series)))


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_rendered(request: HttpRequest, study: str) -> HttpResponse:
    return _rendered_many(request, list(instances_select(user=request.user, study_uid=study)))


def _middle(qs: Any) -> Instance:
    items = list(qs)
    return items[len(items) // 2]


@require_http_methods(["GET"])
@dicomweb_view("view")
def series_thumbnail(request: HttpRequest, study: str, series: str) -> HttpResponse:
    return _render(request, _middle(_with_pixels(instances_select(user=request.user, study_uid=study, series_uid=series))), 1, True)


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_thumbnail(request: HttpRequest, study: str) -> HttpResponse:
    return _render(request, _middle(_with_pixels(instances_select(user=request.user, study_uid=study))), 1, True)


# --- WADO-URI --------------------------------------------------------------------------


@require_http_methods(["GET"])
@dicomweb_view("view")
def wado_uri(request: HttpRequest) -> HttpResponse:
    params = request.GET
    if params.get("requestType", "") != "WADO":
        raise bad_request("requestType must be WADO")
    missing = [k for k in ("studyUID", "seriesUID", "objectUID") if not params.get(k)]
    if missing:
        raise bad_request("missing parameter(s): " + ", ".join(missing))
    inst = _one_instance(request, params["studyUID"], params["seriesUID"], params["objectUID"])
    content_type = (params.get("contentType") or "image/jpeg").split(",")[0].strip().lower()
    if content_type == "application/dicom":
        if not user_can(request.user, "download"):
            # The role table: researchers (and any role without "download") get no DICOM files.
            audit_record(user=request.user, action="download", outcome="denied", request=request,
                         sop_uid=params["objectUID"][:64], detail="WADO-URI application/dicom")
            return JsonResponse({"error": "your role may not download DICOM files"}, status=403)
        asked = params.get("transferSyntax") or "*"
        syntax = _effective_syntax(asked, inst.transfer_syntax_uid)
        if syntax is None:
            raise not_acceptable(f"transfer syntax {asked} is not available")
        audit_record(user=request.user, action="download", request=request,
                     study_uid=params["studyUID"], series_uid=params["seriesUID"],
                     sop_uid=params["objectUID"], detail="WADO-URI application/dicom")
        return HttpResponse(
            _instance_bytes(inst, syntax, is_deidentified_user(request.user)),
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
    _pixels_required(inst)
    if frame < 1 or frame > (inst.number_of_frames or 1):
        raise not_found(f"the instance has {inst.number_of_frames or 1} frame(s)")
    meta = Instance.objects.values_list("metadata", flat=True).get(pk=inst.pk)
    data = frame_render(instance_pixels(instance=inst, frame=frame - 1), meta, window=window,
                        viewport=viewport, media_type=content_type)
    audit_record(user=request.user, action="view", request=request, study_uid=params["studyUID"],
                 series_uid=params["seriesUID"], sop_uid=params["objectUID"], detail="WADO-URI rendered")
    return HttpResponse(data, content_type=content_type)
