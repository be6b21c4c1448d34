"""STOW-RS (PS3.18 10.5): storing instances, as Part 10 files or DICOM JSON with bulk data."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_http_methods

from medvault.accounts.audit import audit_record
from medvault.accounts.permissions import GroupChoiceError, ingest_group
from medvault.core.dicom.multipart import MultipartError, media_type_parse, multipart_parse
from medvault.dicomweb import conf
from medvault.dicomweb.errors import DicomwebError, bad_request, unsupported_media_type
from medvault.dicomweb.negotiation import DICOM_JSON
from medvault.dicomweb.selectors import uid_check
from medvault.dicomweb.services import JsonFailure, StowJsonError, stow_json_parts, stow_store
from medvault.dicomweb.views.base import base_url, dicom_json, dicomweb_view


def _request_body(request: HttpRequest) -> bytes:
    """The request body, also when it came with ``Transfer-Encoding: chunked``.

    Django reads only ``Content-Length`` bytes; a server that de-chunks (gunicorn) marks its
    input stream with ``wsgi.input_terminated``, and then the stream is read to its end.
    """
    body = request.body
    if body or "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return body
    # Under WSGI, META is the WSGI environ.
    if not request.META.get("wsgi.input_terminated"):
        raise DicomwebError(
            411, "this server cannot read chunked request bodies; send a Content-Length or run "
            "MedVault under gunicorn (medvault serve)",
        )
    limit = conf.max_upload_bytes()
    data = request.META["wsgi.input"].read(limit + 1)
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
def stow(request: HttpRequest, study: str | None = None) -> HttpResponseBase:
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
        base_url=base_url(request), request=request, failures=failures,
    )
    return dicom_json(outcome.body, status=outcome.status)
