"""Archive settings, read at call time (tests override them).

The defaults live in one place, ``medvault.web.settings``, which defines every setting read
here; this module only types and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from medvault.core.codecs import CODECS
from medvault.core.dicom.zipsafe import ZipLimits


def compression_codec() -> str:
    """``MEDVAULT_COMPRESSION``: the codec lossless input is re-encoded with, or ``"none"``."""
    codec = str(settings.MEDVAULT_COMPRESSION or "none").lower()
    if codec != "none" and codec not in CODECS:
        raise ImproperlyConfigured(
            f"MEDVAULT_COMPRESSION={codec!r}; use one of {', '.join(['none', *CODECS])}"
        )
    return codec


def compression_deferred() -> bool:
    """``MEDVAULT_COMPRESSION_DEFERRED``: ingest keeps what arrived and the worker compresses later."""
    return bool(settings.MEDVAULT_COMPRESSION_DEFERRED)


def jpegxl_effort() -> int:
    return int(settings.MEDVAULT_JPEGXL_EFFORT)


def max_upload_bytes() -> int:
    """The largest file one upload may be (and the most one instance may decode to)."""
    return int(settings.MEDVAULT_MAX_UPLOAD_BYTES)


def max_image_pixels() -> int:
    """The most Rows x Columns one frame may have."""
    return int(settings.MEDVAULT_MAX_IMAGE_PIXELS)


@dataclass(frozen=True)
class ParseLimits:
    max_image_pixels: int
    max_decoded_bytes: int


def parse_limits() -> ParseLimits:
    """The limits ``parse_instance`` applies to one instance's pixels."""
    return ParseLimits(max_image_pixels=max_image_pixels(), max_decoded_bytes=max_upload_bytes())


def structure_limits() -> tuple[int, int]:
    """(most levels of sequence nesting, most elements) one instance may have."""
    return int(settings.MEDVAULT_DICOM_MAX_DEPTH), int(settings.MEDVAULT_DICOM_MAX_ELEMENTS)


def zip_limits() -> ZipLimits:
    return ZipLimits(
        max_total_bytes=int(settings.MEDVAULT_ZIP_MAX_TOTAL_BYTES),
        max_ratio=int(settings.MEDVAULT_ZIP_MAX_RATIO),
        max_members=int(settings.MEDVAULT_ZIP_MAX_MEMBERS),
    )


def blob_backend() -> str:
    """``"filesystem"``, ``"s3"`` or the dotted path of a factory (see ``blobstore``)."""
    return str(settings.MEDVAULT_BLOB_BACKEND or "filesystem")


def blob_dir() -> Path:
    return Path(settings.MEDVAULT_BLOB_DIR)


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None


def s3_settings() -> S3Settings:
    """The ``MEDVAULT_S3_*`` settings (see docs/operations.md); empty values are ``None``."""
    bucket = str(settings.MEDVAULT_S3_BUCKET or "")
    if not bucket:
        raise ImproperlyConfigured("MEDVAULT_BLOB_BACKEND=s3 needs MEDVAULT_S3_BUCKET")
    return S3Settings(
        bucket=bucket,
        prefix=str(settings.MEDVAULT_S3_PREFIX or ""),
        endpoint_url=settings.MEDVAULT_S3_ENDPOINT_URL or None,
        region=settings.MEDVAULT_S3_REGION or None,
        access_key_id=settings.MEDVAULT_S3_ACCESS_KEY_ID or None,
        secret_access_key=settings.MEDVAULT_S3_SECRET_ACCESS_KEY or None,
    )


# --- background jobs (archive.jobs: analysis, deferred compression, storage commitment) ----
def job_lease_seconds() -> float:
    """``MEDVAULT_JOB_LEASE_SECONDS``: how long a claim lasts before another worker may take
    the job over."""
    return float(settings.MEDVAULT_JOB_LEASE_SECONDS)


def job_max_attempts() -> int:
    """``MEDVAULT_JOB_MAX_ATTEMPTS``: claims a job gets before it fails for good."""
    return max(1, int(settings.MEDVAULT_JOB_MAX_ATTEMPTS))


def job_retry_seconds() -> float:
    """``MEDVAULT_JOB_RETRY_SECONDS``: the first retry's delay; each further one doubles it."""
    return max(0.0, float(settings.MEDVAULT_JOB_RETRY_SECONDS))


def compression_keep_seconds() -> int:
    """``MEDVAULT_COMPRESSION_KEEP_SECONDS``: how long a superseded (uncompressed) blob is kept
    after the swap, for readers that opened it before."""
    return int(settings.MEDVAULT_COMPRESSION_KEEP_SECONDS)
