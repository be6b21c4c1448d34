"""``medvault scrub [--repair]``: re-hash every blob; report missing, corrupt and orphan blobs.

Exits 1 when anything is missing or corrupt, or when orphans are found and not removed.
``--repair`` deletes orphan blobs only (never one that a row points to).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from medvault.archive.scrub import blob_scrub


class Command(BaseCommand):
    help = "Verify every stored blob against its SHA-256 and report missing/corrupt/orphan blobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true", help="delete orphan blobs")
        parser.add_argument(
            "--min-age",
            type=float,
            default=3600.0,
            metavar="SECONDS",
            help="unreferenced blobs younger than this are an ingest in flight, not orphans "
            "(default 3600)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = blob_scrub(repair=options["repair"], min_age_s=options["min_age"])
        self.stdout.write(json.dumps(report, indent=2))
        bad = report["missing"] or report["corrupt"]
        orphans_left = [key for key in report["orphans"] if key not in report["deleted"]]
        if bad or orphans_left:
            sys.exit(1)
