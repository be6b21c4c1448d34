"""What every DICOM association handler needs, whatever the service: socket options, the
database connection of the association's thread, and database writes tried again while the
database is momentarily locked. ``handlers`` (C-ECHO/STORE/FIND/GET/MOVE) and ``commitment``
(Storage Commitment) both use it, so neither imports the other.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from django.db import OperationalError, connections
from pynetdicom.events import Event

__all__ = ["connection_close", "nodelay_set", "retrying"]


def nodelay_set(event: Event) -> None:
    """EVT_CONN_OPEN: turn Nagle's algorithm off (each DIMSE message otherwise stalls ~40 ms)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not a TCP socket


def connection_close(event: Event) -> None:
    """EVT_CONN_CLOSE: give back this association thread's database connections."""
    connections.close_all()


def retrying(write: Callable[[], Any], attempts: int = 8) -> Any:
    """Run a database write, again when the database is momentarily locked.

    Concurrent associations write at the same time; SQLite (and its shared-cache test
    database in particular) can refuse a write lock instead of waiting. The writes used here
    are atomic and idempotent (a repeated store is a duplicate), so trying again is safe.
    """
    for attempt in range(attempts):
        try:
            return write()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")
