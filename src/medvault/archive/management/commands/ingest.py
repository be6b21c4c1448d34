"""``medvault ingest PATH...``: store DICOM files, folders (recursively), ZIPs and PNG/JPEG.

Prints one JSON line per file on stdout; exits 1 if any file was rejected. When stderr is
a terminal a progress bar shows files done, throughput and time left.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, connections
from pydicom.uid import generate_uid

from medvault.archive.outcomes import RejectReason, StoreResult, StoreStatus
from medvault.archive.uploads import upload_store, zip_store
from medvault.core.dicom.zipsafe import is_zip


def _walk(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, total_files: int, total_bytes: int) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total_files = total_files
        self.total_bytes = max(total_bytes, 1)
        self.files = 0
        self.bytes = 0
        self.start = time.monotonic()
        self._last = 0.0

    def advance(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.files == self.total_files):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        fraction = min(self.bytes / self.total_bytes, 1.0)
        rate = self.files / elapsed
        mbps = self.bytes / elapsed / 1e6
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        width = 30
        bar = "#" * int(width * fraction) + "." * (width - int(width * fraction))
        self.stream.write(
            f"\r[{bar}] {self.files}/{self.total_files} files  {rate:.1f} files/s  "
            f"{mbps:.1f} MB/s  ETA {int(eta) // 60}:{int(eta) % 60:02d} "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Ingest DICOM files, folders (recursively), ZIP archives and PNG/JPEG images."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--patient-id", default="", help="PNG/JPEG: PatientID")
        parser.add_argument("--patient-name", default="", help="PNG/JPEG: PatientName (Family^Given)")
        parser.add_argument("--modality", default="", help="PNG/JPEG: modality, e.g. CT or MR")
        parser.add_argument("--study-description", default="", help="PNG/JPEG: StudyDescription")
        parser.add_argument("--body-part", default="", help="PNG/JPEG: BodyPartExamined")
        parser.add_argument(
            "--group", default="",
            help="group (department/site) the files are stored into (its namespace; "
            "a UID another group holds is refused); none: no group",
        )
        parser.add_argument(
            "--jobs", type=int, default=2,
            help="files in flight at once (threads; overlaps fsync waits with decoding). "
            "Output order stays the input order. Default 2",
        )
        parser.add_argument(
            "--defer-compression", action="store_true",
            help="queue compression for the worker (MEDVAULT_COMPRESSION_DEFERRED) instead of "
            "compressing before the command returns, which is the default for a bulk import: "
            "no peer is waiting for an answer, and `medvault stats` is right at once",
        )
        parser.add_argument("--source", default="cli", help=argparse_hidden())

    def handle(self, *args: Any, **options: Any) -> None:
        files = list(_walk(options["paths"]))
        total_bytes = 0
        for path in files:
            try:
                total_bytes += path.stat().st_size
            except OSError:
                pass
        image_fields = {
            "patient_id": options["patient_id"],
            "patient_name": options["patient_name"],
            "modality": options["modality"],
            "study_description": options["study_description"],
            "body_part": options["body_part"],
            # All images of one run form one study and one series.
            "study_instance_uid": generate_uid(),
            "series_instance_uid": generate_uid(),
        }
        common = {
            "source": options["source"],
            "group": options["group"] or None,
            # A command-line import compresses inline unless asked otherwise, whatever
            # MEDVAULT_COMPRESSION_DEFERRED says for the doors where a peer waits.
            "defer_compression": bool(options["defer_compression"]),
        }
        progress = Progress(sys.stderr, len(files), total_bytes)
        counts = dict.fromkeys(StoreStatus, 0)
        jobs = max(1, int(options["jobs"]))
        if connection.in_atomic_block:
            # Called inside a transaction (e.g. call_command in a test): worker threads have
            # their own connections and could not see or join it, so work in this thread.
            jobs = 1
        try:
            for path, results in self._results(files, image_fields, common, jobs):
                for result in results:
                    counts[result.status] += 1
                    self.stdout.write(json.dumps(result.as_dict()))
                try:
                    size = path.stat().st_size
                except OSError:
                    size = 0
                progress.advance(size)
        finally:
            progress.close()
        self.stderr.write(
            f"{counts[StoreStatus.STORED]} stored, {counts[StoreStatus.DUPLICATE]} duplicate, "
            f"{counts[StoreStatus.REJECTED]} rejected"
        )
        if counts[StoreStatus.REJECTED]:
            sys.exit(1)

    def _results(
        self, files: list[Path], image_fields: dict[str, str], common: dict[str, Any], jobs: int
    ) -> Iterator[tuple[Path, list[StoreResult]]]:
        """Results per file in input order, with up to ``2 * jobs`` files in flight."""
        if jobs == 1:
            for path in files:
                yield path, list(self._ingest_one(path, image_fields, common))
            return

        def work(path: Path) -> list[StoreResult]:
            return list(self._ingest_one(path, image_fields, common))

        barrier = threading.Barrier(jobs)

        def close_connections(_: int) -> None:
            # Each worker thread has its own database connections; the barrier makes every
            # thread take exactly one of these tasks, so all of them are closed.
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            connections.close_all()

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                pending: deque[tuple[Path, Future[list[StoreResult]]]] = deque()
                for path in files:
                    pending.append((path, pool.submit(work, path)))
                    if len(pending) >= 2 * jobs:
                        done_path, future = pending.popleft()
                        yield done_path, future.result()
                while pending:
                    done_path, future = pending.popleft()
                    yield done_path, future.result()
            finally:
                list(pool.map(close_connections, range(jobs)))

    def _ingest_one(
        self, path: Path, image_fields: dict[str, str], common: dict[str, Any]
    ) -> Iterator[StoreResult]:
        display = str(path)
        try:
            with open(path, "rb") as handle:
                head = handle.read(4)
                if is_zip(head):
                    handle.seek(0)
                    yield from zip_store(
                        source_file=handle, name=display, image_fields=image_fields, **common
                    )
                    return
                handle.seek(0)
                data = handle.read()
        except OSError as exc:
            yield StoreResult.refused(
                RejectReason.UNREADABLE_FILE, f"cannot read: {exc.strerror or exc}", path=display
            )
            return
        yield from upload_store(name=display, data=data, image_fields=image_fields, **common)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS
