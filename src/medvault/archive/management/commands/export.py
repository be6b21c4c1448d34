"""``medvault export --study|--series|--instance UID DEST``: write Part 10 files back out.

Files are laid out as ``DEST/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
(the UIDs were checked at ingest to be digits and dots, and are checked again here before
they name anything), or with ``--dicomdir`` as a DICOM File-set (``DEST/DICOMDIR`` and
pydicom's ``PT000000/ST000000/...`` names) in an empty folder. An existing file is never
overwritten: it is an error, or skipped with ``--skip-existing``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from medvault.archive.models import Instance
from medvault.archive.selectors import TransferSyntaxUnavailable, instance_part10_bytes
from medvault.core.blobs import BlobNotFound

_UID = re.compile(r"\A[0-9]+(\.[0-9]+)*\Z")


def _uid_name(uid: str) -> str:
    """A UID as a path component; anything but digits and dots is refused."""
    if not (0 < len(uid) <= 64 and _UID.match(uid)):
        raise ValueError(f"{uid[:80]!r} is not a UID, so it names no file")
    return uid


def write_new(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` unless it exists; False when it does (nothing written).

    The bytes go to a temporary file beside it first and are linked into place, so the
    target appears complete or not at all, and an existing one is never replaced.
    """
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".export-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, target)  # fails if target exists: never overwrites
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: exclusive create instead.
            try:
                with open(target, "xb") as handle:
                    handle.write(data)
            except FileExistsError:
                return False
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return True


class Command(BaseCommand):
    help = (
        "Export a study, series or instance as DICOM Part 10 files into "
        "DEST/<Study>/<Series>/<SOP>.dcm (or a DICOMDIR File-set); never overwrites."
    )

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
        layout = parser.add_mutually_exclusive_group()
        layout.add_argument(
            "--skip-existing",
            action="store_true",
            help="skip a file that already exists in DEST (default: report it as an error)",
        )
        layout.add_argument(
            "--dicomdir",
            action="store_true",
            help="write a DICOM File-set with a DICOMDIR into DEST, which must be empty",
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
        ts = options["transfer_syntax"] or None
        if options["dicomdir"]:
            report = self._dicomdir(instances, dest, ts)
        else:
            report = self._tree(instances, dest, ts, skip_existing=options["skip_existing"])
        self.stdout.write(json.dumps(report))
        if report["errors"]:
            sys.exit(1)

    @staticmethod
    def _bytes(instance: Instance, ts: str | None, errors: list[dict[str, str]]) -> bytes | None:
        try:
            return instance_part10_bytes(instance=instance, transfer_syntax_uid=ts)
        except TransferSyntaxUnavailable as exc:
            raise CommandError(str(exc)) from None
        except BlobNotFound:
            errors.append({"sop_instance_uid": instance.sop_instance_uid, "error": "blob missing"})
            return None

    def _tree(
        self, instances: list[Instance], dest: Path, ts: str | None, *, skip_existing: bool
    ) -> dict[str, Any]:
        dest.mkdir(parents=True, exist_ok=True)
        written, skipped, errors = 0, 0, []
        for instance in instances:
            uid = instance.sop_instance_uid
            try:
                target = dest.joinpath(
                    _uid_name(instance.series.study.study_instance_uid),
                    _uid_name(instance.series.series_instance_uid),
                    _uid_name(uid) + ".dcm",
                )
            except ValueError as exc:
                errors.append({"sop_instance_uid": uid, "error": str(exc)})
                continue
            if target.exists():
                if skip_existing:
                    skipped += 1
                else:
                    errors.append(
                        {"sop_instance_uid": uid, "error": f"{target} exists; not overwritten"}
                    )
                continue
            data = self._bytes(instance, ts, errors)
            if data is None:
                continue
            if write_new(target, data):
                written += 1
            elif skip_existing:
                skipped += 1
            else:
                errors.append(
                    {"sop_instance_uid": uid, "error": f"{target} exists; not overwritten"}
                )
        return {"dest": str(dest), "files": written, "skipped": skipped, "errors": errors}

    def _dicomdir(self, instances: list[Instance], dest: Path, ts: str | None) -> dict[str, Any]:
        from io import BytesIO

        import pydicom
        from pydicom.fileset import FileSet

        if dest.exists() and any(dest.iterdir()):
            raise CommandError(
                f"{dest} is not empty; a File-set is written only into an empty folder"
            )
        errors: list[dict[str, str]] = []
        fileset = FileSet()
        exact: dict[str, bytes] = {}
        for instance in instances:
            data = self._bytes(instance, ts, errors)
            if data is None:
                continue
            try:
                fileset.add(pydicom.dcmread(BytesIO(data)))
            except ValueError:
                errors.append(
                    {
                        "sop_instance_uid": instance.sop_instance_uid,
                        "error": "cannot be listed in a DICOMDIR: it lacks an attribute a "
                        "directory record needs (PatientID, StudyDate, StudyTime, StudyID, "
                        "Modality, SeriesNumber or InstanceNumber)",
                    }
                )
                continue
            exact[instance.sop_instance_uid] = data
        if not exact:
            return {"dest": str(dest), "files": 0, "skipped": 0, "errors": errors}
        dest.mkdir(parents=True, exist_ok=True)
        fileset.write(dest)
        # pydicom re-encodes the instances it writes; put back the bytes as stored.
        for record in fileset:
            path = dest / record.FileID
            path.write_bytes(exact[str(record.SOPInstanceUID)])
        return {
            "dest": str(dest),
            "files": len(exact),
            "skipped": 0,
            "errors": errors,
            "dicomdir": str(dest / "DICOMDIR"),
        }
