"""The blob store that settings select (``MEDVAULT_BLOB_BACKEND``), for ops code and as the
S3 hook of the archive's own factory."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def s3_blob_store() -> Any:
    """An ``S3BlobStore`` from the ``MEDVAULT_S3_*`` settings (see docs/operations.md)."""
    from medvault.core.blobs.s3 import S3BlobStore

    bucket = getattr(settings, "MEDVAULT_S3_BUCKET", "")
    if not bucket:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("MEDVAULT_BLOB_BACKEND=s3 needs MEDVAULT_S3_BUCKET")
    return S3BlobStore(
        bucket,
        prefix=getattr(settings, "MEDVAULT_S3_PREFIX", ""),
        endpoint_url=getattr(settings, "MEDVAULT_S3_ENDPOINT_URL", "") or None,
        region=getattr(settings, "MEDVAULT_S3_REGION", "") or None,
        access_key_id=getattr(settings, "MEDVAULT_S3_ACCESS_KEY_ID", "") or None,
        secret_access_key=getattr(settings, "MEDVAULT_S3_SECRET_ACCESS_KEY", "") or None,
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
