"""WADO-RS rendered resources and thumbnails (PS3.18 10.4.1, 10.7): frames as JPEG or PNG.

``frame_rendered_bytes`` renders one frame for every door that renders one (WADO-RS and
WADO-URI); the doors differ only in how they name the parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_http_methods

from medvault.accounts.audit import audit_record
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_pixels
from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type
from medvault.dicomweb import negotiation
from medvault.dicomweb.errors import bad_request, not_found
from medvault.dicomweb.rendering import RenderError, Window, frame_render, viewport_parse, window_parse
from medvault.dicomweb.selectors import instances_select
from medvault.dicomweb.views.base import dicomweb_view, one_instance, pixels_required
from medvault.dicomweb.views.wado import frame_numbers


def frame_rendered_bytes(
    request: HttpRequest,
    inst: Instance,
    *,
    frame: int,
    media_type: str,
    window: Window | None,
    viewport: tuple[int, int] | None,
    quality: int = 90,
    detail: str,
) -> bytes:
    """Frame ``frame`` (from 1) of ``inst`` rendered to ``media_type``; audited as ``detail``.

    404 when the instance has no pixels or no such frame, 400 when it cannot be rendered so.
    """
    pixels_required(inst)
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
                 detail=detail)
    return data


def _render_params(request: HttpRequest) -> tuple[Window | None, tuple[int, int] | None, int]:
    """The ``window``, ``viewport`` and ``quality`` query parameters of a rendered request."""
    try:
        window = window_parse(request.GET["window"]) if request.GET.get("window") else None
        viewport = viewport_parse(request.GET["viewport"]) if request.GET.get("viewport") else None
        quality = int(request.GET.get("quality", "90"))
    except (RenderError, ValueError) as exc:
        raise bad_request(str(exc)) from None
    return window, viewport, quality


def _render(request: HttpRequest, inst: Instance, frame: int, thumbnail: bool) -> HttpResponseBase:
    media_type = negotiation.rendered_image(request)
    window, viewport, quality = _render_params(request)
    if thumbnail and viewport is None:
        viewport = (128, 128)
    data = frame_rendered_bytes(
        request, inst, frame=frame, media_type=media_type, window=window, viewport=viewport,
        quality=quality, detail="WADO-RS thumbnail" if thumbnail else "WADO-RS rendered",
    )
    response = HttpResponse(data, content_type=media_type)
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    return response


def _with_pixels(instances: Any) -> list[Instance]:
    """The instances of a study or series that have pixels; 404 when none has."""
    found = [inst for inst in instances if inst.rows is not None]
    if not found:
        raise not_found("no instance here has pixels: no pixel data to render")
    return found


def _middle(instances: list[Instance]) -> Instance:
    return instances[len(instances) // 2]


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_rendered(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponseBase:
    return _render(request, one_instance(request, study, series, instance), 1, False)


@require_http_methods(["GET"])
@dicomweb_view("view")
def frame_rendered(request: HttpRequest, study: str, series: str, instance: str, frames: str) -> HttpResponseBase:
    inst = one_instance(request, study, series, instance)
    numbers = frame_numbers(frames, inst.number_of_frames or 1)
    return _render(request, inst, numbers[0], False)


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_thumbnail(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponseBase:
    return _render(request, one_instance(request, study, series, instance), 1, True)


def _rendered_many(request: HttpRequest, instances: list[Instance]) -> HttpResponseBase:
    """Rendered study or series (PS3.18 10.4.1): every frame of every instance, one part each,
    as multipart/related of image/jpeg (default) or image/png."""
    media_type = negotiation.rendered_images(request)
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
def series_rendered(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return _rendered_many(request, list(instances_select(user=request.user, study_uid=study, series_uid=series)))


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_rendered(request: HttpRequest, study: str) -> HttpResponseBase:
    return _rendered_many(request, list(instances_select(user=request.user, study_uid=study)))


@require_http_methods(["GET"])
@dicomweb_view("view")
def series_thumbnail(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    instances = _with_pixels(instances_select(user=request.user, study_uid=study, series_uid=series))
    return _render(request, _middle(instances), 1, True)


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_thumbnail(request: HttpRequest, study: str) -> HttpResponseBase:
    return _render(request, _middle(_with_pixels(instances_select(user=request.user, study_uid=study))), 1, True)
