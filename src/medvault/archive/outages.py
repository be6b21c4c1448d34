"""The two outages every door answers alike: the database cannot be reached (503) and the
blob store is full (507). ``ops.middleware`` renders them; a door that catches errors itself
(STOW-RS per part) re-raises these, since every later part would fail the same way."""

from __future__ import annotations

import errno

from django.db import InterfaceError, OperationalError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_NAMES = {"StorageFull", "BlobStoreFull", "InsufficientStorage"}


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, outermost first (at most 20)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_database_unavailable(exc: BaseException) -> bool:
    for item in exception_chain(exc):
        if isinstance(item, (OperationalError, InterfaceError)):
            return True
        # The driver's own errors, when a library let them through unwrapped.
        if type(item).__name__ in {"OperationalError", "InterfaceError"} and type(
            item
        ).__module__.split(".")[0] in {"psycopg", "psycopg2", "MySQLdb", "sqlite3"}:
            return True
    return False


def is_storage_full(exc: BaseException) -> bool:
    for item in exception_chain(exc):
        if isinstance(item, OSError) and item.errno in _FULL_ERRNOS:
            return True
        if type(item).__name__ in _FULL_NAMES:
            return True
    return False
