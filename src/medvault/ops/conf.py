"""Operations settings (middleware limits and headers), typed, with the defaults of
``web/settings.py``; read at call time so that ``override_settings`` applies."""

from __future__ import annotations

from django.conf import settings

DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def content_security_policy() -> str:
    """The Content-Security-Policy of HTML pages; "" turns the header off."""
    return str(getattr(settings, "MEDVAULT_CSP", DEFAULT_CSP))


def max_upload_bytes() -> int:
    """The largest request body accepted (413 above it)."""
    return int(getattr(settings, "MEDVAULT_MAX_UPLOAD_BYTES", 2 * 1024**3))
