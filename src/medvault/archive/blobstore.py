"""The blob store, built from settings at call time (tests override the settings).

The one way to get it: ``blob_store()``. Every app (archive, analysis, ops) calls this.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from medvault.archive import conf
from medvault.core.blobs import BlobStore, FilesystemBlobStore


def blob_store() -> BlobStore:
    """Return the configured backend.

    ``MEDVAULT_BLOB_BACKEND`` is ``"filesystem"`` (blobs under ``MEDVAULT_BLOB_DIR``),
    ``"s3"`` (the ``MEDVAULT_S3_*`` settings, see docs/operations.md) or the dotted path of
    a factory ``module:function`` that takes the settings object and returns a
    ``BlobStore`` (how other backends plug in).
    """
    backend = conf.blob_backend()
    if backend == "filesystem":
        return FilesystemBlobStore(conf.blob_dir())
    if backend == "s3":
        return s3_blob_store()
    module_name, _, attr = backend.partition(":")
    if not attr:
        module_name, _, attr = backend.rpartition(".")
    try:
        factory = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"MEDVAULT_BLOB_BACKEND {backend!r} cannot be loaded: {exc}") from None
    store = factory(settings)
    if not isinstance(store, BlobStore):
        raise ImproperlyConfigured(f"MEDVAULT_BLOB_BACKEND {backend!r} did not return a BlobStore")
    return store


def s3_blob_store() -> BlobStore:
    """An ``S3BlobStore`` from the ``MEDVAULT_S3_*`` settings."""
    return _s3_store(conf.s3_settings())


@lru_cache(maxsize=8)
def _s3_store(s3: conf.S3Settings) -> BlobStore:
    # One client per configuration and process: building a boto3 client costs tens of
    # milliseconds, and clients are thread-safe. boto3 is imported only for this backend.
    from medvault.core.blobs.s3 import S3BlobStore

    store: BlobStore = S3BlobStore(
        s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region,
        access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
    )
    return store
