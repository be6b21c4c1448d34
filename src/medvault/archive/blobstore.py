"""The blob store, built from settings at call time (tests override the settings)."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from medvault.core.blobs import BlobStore, FilesystemBlobStore


def blob_store() -> BlobStore:
    """Return the configured backend.

    ``MEDVAULT_BLOB_BACKEND`` is ``"filesystem"`` (blobs under ``MEDVAULT_BLOB_DIR``),
    ``"s3"`` (``MEDVAULT_S3_*`` settings, built by ``medvault.ops.blobs``) or the dotted path of a factory ``module:function`` that takes the settings object and returns
    a ``BlobStore`` (how other backends such as S3 plug in).
    """
    backend = str(getattr(settings, "MEDVAULT_BLOB_BACKEND", "filesystem") or "filesystem")
    if backend == "filesystem":
        return FilesystemBlobStore(settings.MEDVAULT_BLOB_DIR)
    if backend == "s3":
        from medvault.ops.blobs import s3_blob_store

        store: BlobStore = s3_blob_store()
        return store
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
