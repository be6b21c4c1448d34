"""``medvault compress [--limit N]``: run the deferred-compression queue now, then exit.

The worker does this by itself when it has no analysis job; this command is for an archive
run without a worker, or to finish the queue before measuring disk use. Prints a JSON
summary; exits 1 when a task failed (the original blob is kept; see its ``error``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from medvault.archive.compression import compression_drain, compression_pending


class Command(BaseCommand):
    help = "Re-encode the instances that ingest kept as received (deferred compression)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="stop after N tasks")
        parser.add_argument(
            "--keep", type=float, default=None, metavar="SECONDS",
            help="delete the blobs replaced at least this long ago (default "
            "MEDVAULT_COMPRESSION_KEEP_SECONDS; 0 when no backup is running)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stats = compression_drain(limit=options["limit"], keep_seconds=options["keep"])
        report = {
            "compressed": stats.compressed,
            "kept_as_received": stats.kept,
            "failed": stats.failed,
            "bytes_before": stats.bytes_before,
            "bytes_after": stats.bytes_after,
            "superseded_blobs_deleted": stats.superseded_deleted,
            "pending": compression_pending(),
            "errors": stats.errors[:100],
        }
        self.stdout.write(json.dumps(report, indent=2))
        if stats.failed:
            sys.exit(1)
