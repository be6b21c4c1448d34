"""The image viewer: page, windowed frames (PNG), metadata JSON."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from medvault.accounts import permissions
from medvault.accounts.decorators import role_required
from medvault.accounts.deid import deidentify_json, patient_label, retain_dates
from medvault.archive.access import audit_view, visible_instance_or_404, visible_study_or_404
from medvault.ui import selectors
from medvault.ui.rendering import CT_PRESETS, frame_pixels_bytes, render_frame_png

if TYPE_CHECKING:
    from medvault.archive.models import Instance

log = logging.getLogger(__name__)

# CT, Enhanced CT and Legacy Converted Enhanced CT Image Storage: pixel values rescale to HU.
CT_HOUNSFIELD_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}

# DICOM JSON tags shown first in the metadata panel, with their names.
_KEYWORDS: dict[str, str] | None = None


def _keyword(tag: str) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        return keyword_for_tag(int(tag, 16)) or tag
    except ValueError:
        return tag


@role_required("view")
def viewer(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = visible_study_or_404(request, study_uid)
    deid = permissions.is_deidentified_user(request.user)
    series_list = list(selectors.study_series(study))
    if not series_list:
        return render(request, "ui/viewer.html", {"study": study, "empty": True})
    wanted_series = request.GET.get("series", "")
    wanted_instance = request.GET.get("instance", "")
    current = next((s for s in series_list if s.series_instance_uid == wanted_series), None)
    instances = None
    if current is None and wanted_instance:
        from medvault.archive.models import Instance

        hit = (
            Instance.objects.filter(sop_instance_uid=wanted_instance, series__study=study)
            .select_related("series")
            .first()
        )
        current = hit.series if hit else None
    if current is None:
        current = series_list[0]
    instances = list(selectors.series_instances(current))
    # One entry per frame, so the wheel steps through multi-frame instances as well.
    frames = [
        {"uid": i.sop_instance_uid, "frame": f, "n": i.instance_number, "frames": i.number_of_frames}
        for i in instances for f in range(max(1, i.number_of_frames or 1))
    ]
    start = next(
        (k for k, fr in enumerate(frames) if fr["uid"] == wanted_instance),
        len(frames) // 2 if not wanted_instance else 0,
    )
    audit_view(request, study, series_uid=current.series_instance_uid, detail="viewer")
    name, pid = patient_label(study.patient, deid)
    config = {
        "frames": frames, "start": start, "modality": current.modality,
        # Presets are in Hounsfield units: only for CT images that carry them, not for a
        # PNG/JPEG upload labelled "CT" (a Secondary Capture of 8-bit grey levels).
        "presets": CT_PRESETS if current.modality == "CT" and instances
        and all(i.sop_class_uid in CT_HOUNSFIELD_CLASSES for i in instances) else {},
        "overlayResult": request.GET.get("result", ""),
        "canAnalyse": permissions.user_can(request.user, "analyse"),
        "similarUrl": _similar_url() if permissions.user_can(request.user, "search") else "",
    }
    return render(request, "ui/viewer.html", {
        "study": study, "series_list": series_list, "current": current, "config": config,
        "patient_name": name, "patient_id": pid, "deid": deid, "retain_dates": retain_dates(),
        "birth_date": None if deid else study.patient.patient_birth_date,
    })


def _similar_url() -> str:
    """URL template of the retrieval page for one instance ("" if the retrieval app has none);
    the viewer replaces ``__UID__`` with the instance shown."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse("retrieval_pages:similar", args=["__UID__"])
    except NoReverseMatch:
        return ""


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if abs(number) < 1e9 else None


def _frame_instance(request: HttpRequest, sop_uid: str, frame: int) -> Instance | HttpResponse:
    """The instance of a frame the user may see (audited), or the 404 for a frame it lacks."""
    instance: Instance = visible_instance_or_404(request, sop_uid)
    if frame >= max(1, instance.number_of_frames or 1):
        return HttpResponse("There is no such frame.", status=404, content_type="text/plain")
    audit_view(request, instance.series.study, series_uid=instance.series.series_instance_uid,
               sop_uid=sop_uid, detail="frame", dedupe_seconds=600)
    return instance


def _frame_unreadable(sop_uid: str) -> HttpResponse:
    log.warning("frame of %s cannot be rendered", sop_uid, exc_info=True)
    return HttpResponse(
        "This image cannot be displayed: its stored pixel data cannot be read or decoded.",
        status=422, content_type="text/plain",
    )


@role_required("view")
def frame_png(request: HttpRequest, sop_uid: str, frame: int) -> HttpResponse:
    instance = _frame_instance(request, sop_uid, frame)
    if isinstance(instance, HttpResponse):
        return instance
    center, width = _float(request.GET.get("wc")), _float(request.GET.get("ww"))
    invert = request.GET.get("invert") == "1"
    started = time.perf_counter()
    try:
        png, info, used = render_frame_png(instance, frame, center, width, invert)
    except Exception:  # noqa: BLE001 - tell the viewer in words; the decoder's text goes to the log
        return _frame_unreadable(sop_uid)
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"  # PHI: never outlives the access
    response["X-Window"] = f"{used[0]:g},{used[1]:g}"
    response["X-Render-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
    return response


@role_required("view")
def frame_pixels(request: HttpRequest, sop_uid: str, frame: int) -> HttpResponse:
    """One grey frame in modality units (e.g. Hounsfield), for window/level in the browser.

    Little-endian ``int16`` when every value is a whole number in its range (most CT, MR),
    else ``float32``; ``X-Dtype``, ``X-Rows``, ``X-Columns``, ``X-Window`` (default centre,
    width) and ``X-Photometric`` describe it. Colour frames answer 415: the viewer shows
    those as rendered PNGs.
    """
    instance = _frame_instance(request, sop_uid, frame)
    if isinstance(instance, HttpResponse):
        return instance
    try:
        body, dtype, values, info = frame_pixels_bytes(instance, frame)
    except Exception:  # noqa: BLE001 - tell the viewer in words; the decoder's text goes to the log
        return _frame_unreadable(sop_uid)
    if body is None:
        return HttpResponse("A colour image: ask for the rendered PNG.", status=415, content_type="text/plain")
    response = HttpResponse(body, content_type="application/octet-stream")
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Dtype"] = dtype
    response["X-Rows"], response["X-Columns"] = str(values.shape[0]), str(values.shape[1])
    response["X-Window"] = f"{info.default_center:g},{info.default_width:g}"
    response["X-Photometric"] = info.photometric
    return response


@role_required("view")
def frame_info(request: HttpRequest, sop_uid: str) -> HttpResponse:
    """Metadata panel and default window of one instance (de-identified for researchers)."""
    instance = visible_instance_or_404(request, sop_uid)
    study = instance.series.study
    audit_view(request, study, series_uid=instance.series.series_instance_uid, sop_uid=sop_uid,
               detail="metadata", dedupe_seconds=600)
    meta = instance.metadata or {}
    if permissions.is_deidentified_user(request.user):
        meta = deidentify_json(meta)
    rows = []
    for tag in sorted(meta):
        element = meta[tag]
        if not isinstance(element, dict):
            continue
        vr = element.get("vr", "")
        if vr == "SQ":
            value = f"sequence of {len(element.get('Value') or [])} item(s)"
        elif "Value" in element:
            values = element["Value"]
            value = "\\".join(
                (v.get("Alphabetic", "") if isinstance(v, dict) else str(v)) for v in values
            )
        elif "BulkDataURI" in element or "InlineBinary" in element:
            value = "(binary)"
        else:
            value = ""
        rows.append([f"({tag[:4]},{tag[4:]})", _keyword(tag), vr, value[:200]])
    window = None
    try:
        from medvault.ui.rendering import frame_info as display_info
        from medvault.ui.rendering import modality_frame

        values = modality_frame(instance, 0)
        info = display_info(instance, values, 0)
        window = [info.default_center, info.default_width]
    except Exception:  # noqa: BLE001
        pass
    return JsonResponse({
        "sop_instance_uid": instance.sop_instance_uid, "rows": instance.rows, "columns": instance.columns,
        "frames": instance.number_of_frames, "instance_number": instance.instance_number,
        "modality": instance.series.modality, "window": window, "metadata": rows,
    }, json_dumps_params={"ensure_ascii": False})
