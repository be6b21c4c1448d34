"""Content-addressed blob storage: every blob is keyed by the SHA-256 of its bytes.

The interface is deliberately small (put/get/exists/delete/iter_keys/size) so that other
backends (S3) can implement it. ``FilesystemBlobStore`` is the default backend.
"""

from medvault.core.blobs.base import (
    BlobCorrupt,
    BlobNotFound,
    BlobStore,
    blob_key,
    blob_verify,
    is_blob_key,
)
from medvault.core.blobs.filesystem import FilesystemBlobStore

__all__ = [
    "BlobCorrupt",
    "BlobNotFound",
    "BlobStore",
    "FilesystemBlobStore",
    "blob_key",
    "blob_verify",
    "is_blob_key",
]
