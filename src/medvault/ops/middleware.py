"""Middleware for running MedVault in production.

``ServiceUnavailableMiddleware`` turns infrastructure failures into clear answers instead of a
bare 500: the database unreachable -> 503 (with ``Retry-After``), the blob store out of space ->
507, a value the database refuses (NUL character, too long) -> 400. Django reconnects to the
database on the next request by itself, so MedVault works again as soon as the database is
back, without a restart.

``UploadSizeLimitMiddleware`` refuses a body over ``MEDVAULT_MAX_UPLOAD_BYTES`` with 413 and a
NUL character in the URL with 400.

``ContentSecurityPolicyMiddleware`` adds a Content-Security-Policy to every HTML page (Django 5.2
has none built in): scripts, styles, images and frames only from MedVault itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from html import escape

from django.db import DataError
from django.http import HttpRequest, HttpResponse

from medvault.archive.outages import exception_chain, is_database_unavailable, is_storage_full
from medvault.ops import conf

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (
    "database unavailable: MedVault cannot reach its database right now; nothing was changed. "
    "Try again in a few seconds."
)
STORAGE_FULL = (
    "storage full: the blob store has no space left, so nothing was stored. "
    "Earlier data is intact; ask an administrator to free or add space."
)


def _wants_html(request: HttpRequest) -> bool:
    if request.path.startswith(("/dicomweb/", "/api/", "/healthz")):
        return False
    return "text/html" in request.headers.get("Accept", "")


def error_response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if _wants_html(request):
        heading = (
            "MedVault is unavailable" if status in (502, 503, 504) else "MedVault could not do that"
        )
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>MedVault</title>"
            f"<h1>{heading}</h1><p>{escape(message)}</p></html>"
        )
        response = HttpResponse(body, status=status, content_type="text/html; charset=utf-8")
    else:
        response = HttpResponse(
            json.dumps({"error": message}), status=status, content_type="application/json"
        )
    if status == 503:
        response["Retry-After"] = "10"
    return response


def infrastructure_error_response(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    if is_storage_full(exc):
        logger.error("storage full while handling %s %s", request.method, request.path)
        return error_response(request, 507, STORAGE_FULL)
    if any(isinstance(item, DataError) for item in exception_chain(exc)):
        # The database refused a value from the request (a NUL character, which PostgreSQL
        # cannot hold, or a value too long for its column): the client's input, not a crash.
        logger.warning("database refused a value in %s %s: %s", request.method, request.path, exc)
        return error_response(
            request, 400,
            "bad request: a value in the request cannot be stored or searched (NUL character "
            "or too long)",
        )
    if is_database_unavailable(exc):
        logger.error("database unavailable while handling %s %s: %s", request.method,
                     request.path, exc)
        return error_response(request, 503, DATABASE_UNAVAILABLE)
    return None


class ServiceUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return infrastructure_error_response(request, exception)




class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = conf.content_security_policy()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            self.policy
            and "Content-Security-Policy" not in response
            and response.get("Content-Type", "").startswith("text/html")
        ):
            response["Content-Security-Policy"] = self.policy
        return response


PRIVATE_NO_STORE = "private, no-store"


class PrivateNoStoreMiddleware:
    """``Cache-Control: private, no-store`` on every answer MedVault computes (pages, JSON,
    DICOM, rendered images): almost all of them carry patient data, and a copy in a browser or
    proxy cache would outlive a revoked share or a logout. Static files are answered earlier
    by WhiteNoise and keep their long cache lifetimes; a view that says ``public`` or already
    ``no-store`` (Django's ``never_cache``) is left alone."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        current = response.get("Cache-Control", "")
        if "public" not in current and "no-store" not in current:
            response["Cache-Control"] = PRIVATE_NO_STORE
        return response


# Raw-body uploads (STOW-RS and friends) may be as large as MEDVAULT_MAX_UPLOAD_BYTES; form
# posts and JSON stay under Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
_RAW_UPLOAD_TYPES = ("multipart/related", "application/dicom", "application/octet-stream",
                     "application/zip")


class UploadSizeLimitMiddleware:
    """Answer 413 with a clear message when a request declares more than
    ``MEDVAULT_MAX_UPLOAD_BYTES`` (default 2 GiB), before a byte of the body is read, and 400
    when the URL holds a NUL character.

    Raw-body uploads under the limit are read here, once, so that Django's form-size limit
    (meant for form fields, 10 MiB) does not reject a large STOW-RS request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = conf.max_upload_bytes()
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(request, 400, "bad request: Content-Length is not a number")
        if declared > limit:
            response = error_response(
                request, 413,
                f"upload too large: the request declares {declared} bytes; the limit is {limit} "
                "bytes (MEDVAULT_MAX_UPLOAD_BYTES)",
            )
            response["Connection"] = "close"
            return response
        # A NUL character is never part of a valid query, and PostgreSQL cannot even compare
        # a string that holds one: refuse it here with 400 rather than fail deeper with 500.
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values)
            for key, values in request.GET.lists()
        ):
            return error_response(request, 400, "bad request: NUL character in the URL")
        content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if declared and content_type in _RAW_UPLOAD_TYPES and request.method in ("POST", "PUT"):
            body = request.read(declared + 1)
            if len(body) != declared:
                return error_response(
                    request, 400,
                    f"bad request: the body has {len(body)} bytes, Content-Length said {declared}",
                )
            # What HttpRequest.body would hold, read without the form-field size limit.
            request._body = body
        return self.get_response(request)
