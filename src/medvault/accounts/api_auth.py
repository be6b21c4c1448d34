"""Authentication for JSON and DICOMweb endpoints.

Accepted: the browser session; ``Authorization: Token <key>``; HTTP Basic with the username
and an API token as the password (for DICOMweb clients that only speak Basic).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from medvault.accounts.permissions import is_active_user
from medvault.accounts.tokens import token_user

WWW_AUTHENTICATE = 'Token realm="MedVault", Basic realm="MedVault"'


def _header_user(request: HttpRequest) -> Any | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme in ("token", "bearer"):
        return token_user(credentials)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        username, sep, key = decoded.partition(":")
        if not sep:
            return None
        user = token_user(key)
        if user is not None and user.get_username() == username:
            return user
    return None


def api_user(request: HttpRequest) -> Any | None:
    """The authenticated, approved user of this request, or None.

    Sets ``request.medvault_auth`` to "session" or "token" for the caller's information.
    """
    if request.META.get("HTTP_AUTHORIZATION"):
        # Read once per request (the researcher UID middleware asks before the view does).
        if not hasattr(request, "_medvault_header_user"):
            request._medvault_header_user = _header_user(request)  # type: ignore[attr-defined]
        user = request._medvault_header_user  # type: ignore[attr-defined]
        if user is not None and is_active_user(user):
            request.medvault_auth = "token"  # type: ignore[attr-defined]
            return user
        return None
    session_user = getattr(request, "user", None)
    if session_user is not None and is_active_user(session_user):
        request.medvault_auth = "session"  # type: ignore[attr-defined]
        return session_user
    return None


def unauthorized(message: str = "authentication required") -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    check = _CsrfCheck(lambda req: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda req: HttpResponse(), (), {})
    return reason if isinstance(reason, str) else None


def api_login_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Require an API user; answer 401 JSON (with WWW-Authenticate) otherwise.

    Token/Basic requests are exempt from CSRF (browsers never send those headers on their
    own); session requests that change state must still carry the CSRF token.
    Sets ``request.user`` to the authenticated user.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = api_user(request)
        if user is None:
            if request.META.get("HTTP_AUTHORIZATION"):
                # Wrong or revoked credentials: worth a trace (token guessing, stale clients).
                from medvault.accounts.audit import audit_record

                scheme = request.META["HTTP_AUTHORIZATION"].split(" ", 1)[0][:16]
                audit_record(user=None, action="api-auth", outcome="denied", request=request,
                             detail=f"{scheme} credentials refused: {request.method} {request.path[:200]}")
            return unauthorized()
        if getattr(request, "medvault_auth", "") == "session" and request.method not in (
            "GET", "HEAD", "OPTIONS", "TRACE"
        ):
            reason = _csrf_failure(request)
            if reason:
                return JsonResponse({"error": f"CSRF check failed: {reason}"}, status=403)
        request.user = user
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapper)
