"""Operations endpoints: ``/healthz`` and the server-error handler."""

from __future__ import annotations

import json
import sys

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from medvault.ops.health import health_check
from medvault.ops.middleware import error_response, infrastructure_error_response


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the blob store answer, else 503.

    Unauthenticated (load balancers and monitors call it) and it tells nothing but "ok" or
    "unavailable" per component: no versions, counts, host names or error texts.
    """
    report = health_check()
    body = {
        "status": "ok" if report.ok else "unavailable",
        "database": "ok" if report.database else "unavailable",
        "blob_store": "ok" if report.blob_store else "unavailable",
    }
    response = HttpResponse(
        json.dumps(body), status=200 if report.ok else 503, content_type="application/json"
    )
    if not report.ok:
        response["Retry-After"] = "10"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an outage of the database or a full disk gets its own clear answer."""
    exc = sys.exc_info()[1]
    if exc is not None:
        response = infrastructure_error_response(request, exc)
        if response is not None:
            return response
    return error_response(request, 500, "internal error: the request failed; it was logged")
