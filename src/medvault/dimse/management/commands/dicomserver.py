"""``medvault dicomserver``: run the DICOM SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET,
storage commitment; this process also sends the storage commitment reports)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from medvault.dimse.server import dicomserver_start


class Command(BaseCommand):
    help = "Run the DICOM network service (AE title and port from settings)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=None, help="TCP port (default MEDVAULT_DICOM_PORT)")
        parser.add_argument("--host", default=None, help="address to bind (default MEDVAULT_DICOM_HOST)")
        parser.add_argument("--ae-title", default=None, help="AE title (default MEDVAULT_DICOM_AE_TITLE)")

    def handle(self, *args: Any, **options: Any) -> None:
        server = dicomserver_start(host=options["host"], port=options["port"], ae_title=options["ae_title"])
        host, port = server.server_address[:2]
        title = options["ae_title"] or settings.MEDVAULT_DICOM_AE_TITLE
        self.stdout.write(f"DICOM SCP {title} listening on {host}:{port}", ending="\n")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.shutdown()
        self.stdout.write("DICOM SCP stopped")
