"""Fixtures for DIMSE tests: a running MedVault SCP on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
