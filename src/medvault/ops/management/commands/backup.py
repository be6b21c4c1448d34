"""``medvault backup DEST`` / ``medvault backup --verify DEST``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from medvault.archive.blobstore import blob_store
from medvault.ops.backup import BackupError, backup_create, backup_verify


class Command(BaseCommand):
    help = (
        "Snapshot the database and (incrementally) the blob store into DEST while MedVault "
        "runs; with --verify, re-hash a snapshot instead."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("dest", type=Path, help="backup directory (created if absent)")
        parser.add_argument("--verify", action="store_true", help="check every hash of a snapshot")
        parser.add_argument("--snapshot", help="snapshot name for --verify (default: the latest)")

    def handle(self, *args: Any, **options: Any) -> None:
        dest: Path = options["dest"]
        try:
            if options["verify"]:
                report = backup_verify(src=dest, name=options["snapshot"])
                self.stdout.write(json.dumps({
                    "snapshot": report.snapshot, "checked_blobs": report.checked_blobs,
                    "ok": report.ok, "problems": report.problems,
                }))
                if not report.ok:
                    raise CommandError(f"snapshot {report.snapshot} failed verification")
                return
            manifest = backup_create(
                dest=dest, store=blob_store(), log=lambda m: self.stderr.write(m)
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        summary = {k: v for k, v in manifest.items() if k not in {"blobs", "migrations"}}
        self.stdout.write(json.dumps(summary))
