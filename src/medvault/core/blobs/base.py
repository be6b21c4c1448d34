"""The blob store interface shared by all backends."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

_KEY_RE = re.compile(r"\A[0-9a-f]{64}\Z")


class BlobNotFound(KeyError):
    """No blob is stored under the key."""


class BlobCorrupt(ValueError):
    """The bytes stored under a key no longer hash to that key."""


def blob_key(data: bytes) -> str:
    """Return the content address (lower-case SHA-256 hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def blob_verify(key: str, data: bytes) -> bytes:
    """Return ``data`` when it still hashes to ``key``; raise ``BlobCorrupt`` otherwise.

    The one integrity check of a stored blob against the content address the archive
    recorded for it (``blob_scrub`` and storage commitment both use it).
    """
    if blob_key(data) != key:
        raise BlobCorrupt(key)
    return data


def is_blob_key(key: str) -> bool:
    """True when ``key`` looks like a content address; anything else is never a path."""
    return bool(_KEY_RE.match(key))


@runtime_checkable
class BlobStore(Protocol):
    """A content-addressed store of immutable byte strings.

    ``put`` must make the blob durable (on disk, or acknowledged by the object store)
    before it returns, because a database row that points at the key commits right after.
    """

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its key (SHA-256 hex). Idempotent."""
        ...

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; raise ``BlobNotFound`` when absent."""
        ...

    def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob under ``key``; absent keys are ignored."""
        ...

    def iter_keys(self) -> Iterator[str]:
        """Yield every stored key (in no particular order)."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes of the blob under ``key``; raise ``BlobNotFound`` when absent."""
        ...
