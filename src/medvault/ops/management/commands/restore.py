"""``medvault restore SRC``: restore a snapshot made by ``medvault backup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from medvault.archive.blobstore import blob_store
from medvault.ops.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a snapshot (SRC = backup directory, or one of its snapshots/<name>) into an "
        "empty installation. Stop the app servers and workers first; run `medvault migrate` "
        "afterwards when this version is newer than the snapshot."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("src", type=Path)
        parser.add_argument("--snapshot", help="snapshot name (default: the latest)")
        parser.add_argument(
            "--force", action="store_true",
            help="replace the database of a non-empty installation",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = backup_restore(
                src=options["src"], store=blob_store(), name=options["snapshot"],
                force=options["force"], log=lambda m: self.stderr.write(m),
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result))
