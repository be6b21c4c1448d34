"""DICOMweb settings, each with the default ``web/settings.py`` gives it."""

from __future__ import annotations

from django.conf import settings

QIDO_MAX_RESULTS_DEFAULT = 1000
MAX_UPLOAD_BYTES_DEFAULT = 2 * 1024**3


def qido_max_results() -> int:
    """Most matches one QIDO-RS query returns (clients page with ``limit``/``offset``)."""
    return int(getattr(settings, "MEDVAULT_QIDO_MAX_RESULTS", QIDO_MAX_RESULTS_DEFAULT))


def max_upload_bytes() -> int:
    """The largest request body STOW-RS reads when it comes chunked (no Content-Length)."""
    return int(getattr(settings, "MEDVAULT_MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES_DEFAULT))
