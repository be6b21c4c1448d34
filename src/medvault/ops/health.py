"""Health checks of what every request needs: the database and the blob store."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

# A well-formed key that is never stored: asking for it is one round trip to the store.
_PROBE_KEY = "0" * 64


@dataclass(frozen=True)
class HealthReport:
    database: bool
    blob_store: bool

    @property
    def ok(self) -> bool:
        return self.database and self.blob_store


def database_ok() -> bool:
    """One ``SELECT 1``; a broken persistent connection is closed so the next try reconnects."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except DatabaseError:
        logger.warning("health: database check failed", exc_info=True)
        try:
            connection.close()
        except DatabaseError:
            pass
        return False


def _writable_dir(path: Path) -> bool:
    # The blob directory appears with the first upload; until then its nearest existing
    # ancestor must let us create it.
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.R_OK | os.W_OK | os.X_OK)


def blob_store_ok() -> bool:
    """The configured blob store answers (without writing: a probe blob would be an orphan)."""
    from medvault.archive.blobstore import blob_store

    try:
        store = blob_store()
        root = getattr(store, "root", None)
        if root is not None and not _writable_dir(Path(root)):
            logger.warning("health: blob directory %s is not a writable directory", root)
            return False
        ping = getattr(store, "ping", None)
        if callable(ping):
            ping()  # e.g. S3: HEAD on the bucket (a HEAD on a key cannot tell "no bucket")
        store.exists(_PROBE_KEY)
        return True
    except Exception:  # noqa: BLE001 - any failure of a backend means "unavailable"
        logger.warning("health: blob store check failed", exc_info=True)
        return False


def health_check() -> HealthReport:
    return HealthReport(database=database_ok(), blob_store=blob_store_ok())
