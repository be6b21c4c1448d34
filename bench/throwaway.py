"""A throw-away MedVault installation for benchmarks: SQLite file + blob store in a temp dir."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def throwaway_installation(prefix: str, **extra_env: str) -> Path:
    """Point MedVault at a new temporary directory, set Django up and migrate.

    Call before importing anything that touches Django models. Returns the directory; the
    caller removes it when done.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
        "MEDVAULT_DATA_DIR": str(tmp / "var"),
        "MEDVAULT_BLOB_DIR": str(tmp / "blobs"),
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "MEDVAULT_AUTO_ANALYSE": "0",
        "MEDVAULT_LOG_LEVEL": "WARNING",
        "MEDVAULT_ALLOWED_HOSTS": "testserver",
        **extra_env,
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return tmp


def bench_clinician(group_name: str = "bench") -> tuple[Any, Any]:
    """An approved clinician in a new group: ``(user, group)``."""
    from django.contrib.auth.models import Group

    from medvault.accounts.models import User

    group = Group.objects.create(name=group_name)
    user = User.objects.create_user("bench", password="x" * 12, role="clinician", status="approved")
    user.groups.add(group)
    return user, group



def free_port() -> int:
    """A loopback port that was free a moment ago (a subprocess must be told it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_wait(port: int, tries: int = 100) -> None:
    """Return once something accepts connections on the loopback ``port`` (or after
    ``tries`` x 0.1-0.3 s; the caller's first request then fails with the reason)."""
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)


@contextlib.contextmanager
def medvault_served() -> Iterator[str]:
    """``medvault serve`` (no worker) on a free loopback port of the installation set up by
    ``throwaway_installation``; yields its base URL once it accepts connections."""
    port = free_port()
    medvault = Path(__file__).resolve().parents[1] / ".venv/bin/medvault"
    server = subprocess.Popen(
        [str(medvault), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_wait(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
