"""DICOM network settings, read at call time (tests override them).

The defaults live in one place, ``medvault.web.settings``; this module only types them.
"""

from __future__ import annotations

from django.conf import settings


def check_host() -> bool:
    """``MEDVAULT_DICOM_CHECK_HOST``: a configured AE title is accepted only from its host."""
    return bool(settings.MEDVAULT_DICOM_CHECK_HOST)


def check_called_ae() -> bool:
    """``MEDVAULT_DICOM_CHECK_CALLED_AE``: the called AE title must be ours."""
    return bool(settings.MEDVAULT_DICOM_CHECK_CALLED_AE)


def max_associations() -> int:
    """``MEDVAULT_DICOM_MAX_ASSOCIATIONS``: associations served at once."""
    return int(settings.MEDVAULT_DICOM_MAX_ASSOCIATIONS)


def commitment_retry_seconds() -> float:
    """``MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS``: the first delay before a storage
    commitment report is sent again; each further one doubles it."""
    return float(settings.MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS)


def commitment_max_attempts() -> int:
    """``MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS``: sends of one report before it fails."""
    return max(1, int(settings.MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS))
