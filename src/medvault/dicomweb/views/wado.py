"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data."""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_http_methods

from medvault.accounts.audit import audit_record
from medvault.accounts.deid import deidentify_dataset
from medvault.accounts.permissions import is_deidentified_user
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_blob, instance_dataset, instance_part10_bytes, instance_pixels
from medvault.core.codecs.lossless_to_native import FAST_SYNTAXES, native_part10
from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type
from medvault.dicomweb import negotiation
from medvault.dicomweb.errors import bad_request, not_acceptable, not_found
from medvault.dicomweb.negotiation import DICOM_JSON, EXPLICIT_LE
from medvault.dicomweb.selectors import instances_select, metadata_json_text, metadata_select
from medvault.dicomweb.views.base import base_url, dicom_json, dicomweb_view, one_instance, pixels_required

# Transfer syntaxes few peers decode (JPEG XL, added in 2024): "*" sends these decompressed.
_UNCOMMON_SYNTAXES = {"1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112"}


def effective_syntax(asked: str, stored: str) -> str | None:
    """The syntax an instance stored in ``stored`` is sent in when ``asked`` (``*``: as
    stored, JPEG XL excepted); None when it cannot be."""
    if asked == "*":
        return EXPLICIT_LE if stored in _UNCOMMON_SYNTAXES else stored
    if asked in (stored, EXPLICIT_LE):
        return asked
    return None


def instance_bytes(instance: Instance, syntax: str, deidentified: bool) -> bytes:
    """The Part 10 file of ``instance`` in ``syntax`` (de-identified for researchers)."""
    if not deidentified:
        return instance_part10_bytes(instance=instance, transfer_syntax_uid=syntax)
    ds = deidentify_dataset(instance_dataset(instance=instance, transfer_syntax_uid=syntax))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# Decoding threads per retrieval (CharLS and OpenJPH release the GIL), and how many decoded files may
# wait, in order, for the client: enough to keep every core busy, bounded in memory (files
# and decoded bytes; one file is always let through, however large).
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
DECODE_AHEAD = 2 * DECODE_THREADS
DECODE_AHEAD_BYTES = 256 << 20


def _native_bytes(data: bytes) -> bytes | None:
    """The fast decompression (None: not applicable); runs in a decoding thread."""
    return native_part10(data)


def _parts_in_order(plan: list[tuple[Instance, str]], deidentified: bool) -> Iterator[tuple[bytes, str]]:
    """Each planned instance as a Part 10 file in its syntax, in plan order.

    Stored JPEG-LS and HTJ2K files asked for in Explicit VR Little Endian are read here (blob reads
    may consult the index, so they stay on this thread), decoded in a small thread pool a few
    files ahead of the client and spliced into native files without re-serialising; every
    other case, and any file the fast path declines, takes ``instance_bytes``.
    """
    def slow(inst: Instance, syntax: str) -> bytes:
        return instance_bytes(inst, syntax, deidentified)

    pending: deque[tuple[Instance, str, Future[bytes | None] | None]] = deque()
    pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="wado-decode")
    try:
        queue = iter(plan)
        exhausted = False
        while True:
            while not exhausted and len(pending) < DECODE_AHEAD and (
                not pending or sum(p[0].raw_pixel_bytes for p in pending) < DECODE_AHEAD_BYTES
            ):
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                inst, syntax = item
                future: Future[bytes | None] | None = None
                if not deidentified and syntax == EXPLICIT_LE and inst.transfer_syntax_uid in FAST_SYNTAXES:
                    data = instance_blob(instance=inst)  # may find the blob swapped: row updated
                    if inst.transfer_syntax_uid in FAST_SYNTAXES:
                        future = pool.submit(_native_bytes, data)
                pending.append((inst, syntax, future))
            if not pending:
                return
            inst, syntax, future = pending.popleft()
            content = future.result() if future is not None else None
            if content is None:
                content = slow(inst, syntax)
            yield content, f"application/dicom; transfer-syntax={syntax}"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _retrieve(request: HttpRequest, study: str, series: str | None = None, sop: str | None = None) -> HttpResponseBase:
    asked = negotiation.instance_syntax(request)
    # The index's metadata JSON is not needed to send files; loading it cost ~2 ms an instance.
    selected = instances_select(user=request.user, study_uid=study, series_uid=series, sop_uid=sop)
    instances = list(selected.defer("metadata"))
    plan = []
    for inst in instances:
        syntax = effective_syntax(asked, inst.transfer_syntax_uid)
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
    return StreamingHttpResponse(
        multipart_build(_parts_in_order(plan, deidentified), boundary),
        content_type=multipart_content_type(boundary, "application/dicom"),
    )


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_study(request: HttpRequest, study: str) -> HttpResponseBase:
    return _retrieve(request, study)


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_series(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return _retrieve(request, study, series)


@require_http_methods(["GET"])
@dicomweb_view("download")  # whole DICOM files: the role table's "download DICOM"
def retrieve_instance(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponseBase:
    return _retrieve(request, study, series, instance)


def _metadata(request: HttpRequest, study: str, series: str | None = None, sop: str | None = None) -> HttpResponseBase:
    negotiation.dicom_json(request)
    instances = instances_select(user=request.user, study_uid=study, series_uid=series, sop_uid=sop)
    audit_record(user=request.user, action="view", request=request, study_uid=study,
                 series_uid=series or "", sop_uid=sop or "", detail="WADO-RS metadata")
    if is_deidentified_user(request.user):
        return dicom_json(metadata_select(user=request.user, instances=instances, base_url=base_url(request)))
    text = metadata_json_text(instances=instances, base_url=base_url(request))
    return HttpResponse(text, content_type=DICOM_JSON)


@require_http_methods(["GET"])
@dicomweb_view("view")
def study_metadata(request: HttpRequest, study: str) -> HttpResponseBase:
    return _metadata(request, study)


@require_http_methods(["GET"])
@dicomweb_view("view")
def series_metadata(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return _metadata(request, study, series)


@require_http_methods(["GET"])
@dicomweb_view("view")
def instance_metadata(request: HttpRequest, study: str, series: str, instance: str) -> HttpResponseBase:
    return _metadata(request, study, series, instance)


def frame_numbers(text: str, count: int) -> list[int]:
    """The frame list of a path (``1,3,5``), each between 1 and ``count``."""
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


@require_http_methods(["GET"])
@dicomweb_view("view")
def frames(request: HttpRequest, study: str, series: str, instance: str, frames: str) -> HttpResponseBase:
    negotiation.octet_stream(request)
    inst = pixels_required(one_instance(request, study, series, instance))
    numbers = frame_numbers(frames, inst.number_of_frames or 1)
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
def bulkdata(request: HttpRequest, study: str, series: str, instance: str, tag: str) -> HttpResponseBase:
    negotiation.octet_stream(request)
    inst = one_instance(request, study, series, instance)
    try:
        tag_value = int(tag, 16)
    except ValueError:
        raise bad_request(f"bulk data tag {tag[:20]!r} must be 8 hex digits") from None
    if len(tag) != 8:
        raise bad_request("bulk data tag must be 8 hex digits")
    if tag_value == 0x7FE00010:
        pixels_required(inst)
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
