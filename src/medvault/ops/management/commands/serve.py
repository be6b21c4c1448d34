"""``medvault serve``: the laptop start — gunicorn app server plus one analysis worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management import get_commands
from django.core.management.base import BaseCommand

from medvault.core.children import die_with_parent


class Command(BaseCommand):
    help = "Run MedVault (gunicorn) and one analysis worker until interrupted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--no-worker", action="store_true", help="do not start an analysis worker")

    def handle(self, *args: Any, **options: Any) -> None:
        bindir = os.path.dirname(sys.executable)
        children: list[subprocess.Popen[bytes]] = []
        # Killed with SIGKILL, serve cannot stop its children: the kernel sends them SIGTERM.
        preexec = die_with_parent()
        if not options["no_worker"] and "worker" in get_commands():
            children.append(subprocess.Popen([os.path.join(bindir, "medvault"), "worker"], preexec_fn=preexec))
        server = subprocess.Popen(
            [
                os.path.join(bindir, "gunicorn"),
                "medvault.web.wsgi",
                "--bind", f"{options['host']}:{options['port']}",
                "--workers", str(options["workers"]),
                "--timeout", "300",
                "--access-logfile", "-",
            ],
            preexec_fn=preexec,
        )
        children.append(server)
        self.stdout.write(f"MedVault is running at http://{options['host']}:{options['port']}/  (Ctrl-C stops it)")

        def stop(signum: int, frame: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            stop(signal.SIGTERM, None)
            deadline = time.monotonic() + 20
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
