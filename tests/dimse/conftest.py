"""Fixtures for DIMSE tests: a running MedVault SCP on a free loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.db import OperationalError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


T = TypeVar("T")


def eventually(read: Callable[[], T], *, seconds: float, pause: float = 0.05) -> T | None:
    """Poll ``read`` until it returns something truthy (returned) or ``seconds`` pass (None).

    The SCP's threads write while the test reads. On the in-memory SQLite test database
    (shared cache) a read that meets another thread's write fails at once with "table is
    locked" instead of waiting, as the SCP's own writes do (``association.retrying``); such a
    read counts as "not yet". A file database in WAL mode, as deployed, does not do this.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = read()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            value = None
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(pause)


@pytest.fixture
def scp(transactional_db: Any, blob_dir: Any, settings: Any) -> Iterator[dict[str, Any]]:
    """MedVault's SCP with AE title MEDVAULT; known peers: TESTSCU (may do everything)."""
    from medvault.dimse.models import RemoteAE
    from medvault.dimse.server import dicomserver_start

    settings.MEDVAULT_AUTO_ANALYSE = False
    RemoteAE.objects.create(ae_title="TESTSCU", host="127.0.0.1", port=free_port())
    port = free_port()
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False)
    try:
        yield {"port": port, "server": server}
    finally:
        server.shutdown()
