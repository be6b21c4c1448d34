"""The blob store that settings select (``MEDVAULT_BLOB_BACKEND``), for ops code and as the
S3 hook of the archive's own factory."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings


def s3_blob_store() -> Any:
    """An ``S3BlobStore`` from the ``MEDVAULT_S3_*`` settings (see docs/operations.md)."""
    bucket = getattr(settings, "MEDVAULT_S3_BUCKET", "")
    if not bucket:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("MEDVAULT_BLOB_BACKEND=s3 needs MEDVAULT_S3_BUCKET")
    return _s3_store(
        bucket,
        getattr(settings, "MEDVAULT_S3_PREFIX", ""),
        getattr(settings, "MEDVAULT_S3_ENDPOINT_URL", "") or None,
        getattr(settings, "MEDVAULT_S3_REGION", "") or None,
        getattr(settings, "MEDVAULT_S3_ACCESS_KEY_ID", "") or None,
        getattr(settings, "MEDVAULT_S3_SECRET_ACCESS_KEY", "") or None,
    )


@lru_cache(maxsize=8)
def _s3_store(
    bucket: str, prefix: str, endpoint_url: str | None, region: str | None,
    access_key_id: str | None, secret_access_key: str | None,
) -> Any:
    # One client per configuration and process: building a boto3 client costs tens of
    # milliseconds, and clients are thread-safe.
    from medvault.core.blobs.s3 import S3BlobStore

    return S3BlobStore(
        bucket, prefix=prefix, endpoint_url=endpoint_url, region=region,
        access_key_id=access_key_id, secret_access_key=secret_access_key,
    )


def configured_blob_store() -> Any:
    """The blob store the archive uses: its own factory when present, else from settings."""
    try:
        from medvault.archive.blobstore import blob_store  # type: ignore[import-not-found]
    except ImportError:
        blob_store = None
    if blob_store is not None:
        return blob_store()
    if settings.MEDVAULT_BLOB_BACKEND == "s3":
        return s3_blob_store()
    from medvault.core.blobs import FilesystemBlobStore

    return FilesystemBlobStore(settings.MEDVAULT_BLOB_DIR)
