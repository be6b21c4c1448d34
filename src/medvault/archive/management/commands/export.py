"""``medvault export --study|--series|--instance UID DEST``: write Part 10 files back out.

File names are a counter (``IM000001.dcm``), never a UID from the data.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from medvault.archive.models import Instance
from medvault.archive.selectors import TransferSyntaxUnavailable, instance_part10_bytes
from medvault.core.blobs import BlobNotFound


class Command(BaseCommand):
    help = "Export a study, series or instance as DICOM Part 10 files into DEST."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--study", metavar="UID")
        which.add_argument("--series", metavar="UID")
        which.add_argument("--instance", metavar="UID")
        parser.add_argument("dest", metavar="DEST")
        parser.add_argument(
            "--transfer-syntax",
            default="",
            metavar="UID",
            help="1.2.840.10008.1.2.1 writes decompressed files; default: as stored",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = Instance.objects.select_related("series__study")
        if options["study"]:
            queryset = queryset.filter(series__study__study_instance_uid=options["study"])
        elif options["series"]:
            queryset = queryset.filter(series__series_instance_uid=options["series"])
        else:
            queryset = queryset.filter(sop_instance_uid=options["instance"])
        instances = list(
            queryset.order_by("series__series_number", "series__pk", "instance_number", "pk")
        )
        if not instances:
            raise CommandError("no stored instance matches")
        dest = Path(options["dest"])
        dest.mkdir(parents=True, exist_ok=True)
        ts = options["transfer_syntax"] or None
        written, errors = 0, []
        for counter, instance in enumerate(instances, start=1):
            try:
                data = instance_part10_bytes(instance=instance, transfer_syntax_uid=ts)
            except TransferSyntaxUnavailable as exc:
                raise CommandError(str(exc)) from None
            except BlobNotFound:
                errors.append({"sop_instance_uid": instance.sop_instance_uid, "error": "blob missing"})
                continue
            target = dest / f"IM{counter:06d}.dcm"
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            written += 1
        self.stdout.write(json.dumps({"dest": str(dest), "files": written, "errors": errors}))
        if errors:
            sys.exit(1)
