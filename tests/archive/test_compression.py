"""Deferred compression: ingest keeps what arrived, the worker re-encodes it later.

Real codecs, real blob store, real database; the stand-ins are blob stores whose writes
fail (a full disk), to show that a failed re-encoding leaves the original, and whose writes
run a scrub, a takeover of the task or a crash right after the blob is written (the window
before the swap).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medvault.archive import selectors
from medvault.archive.blobstore import blob_store
from medvault.archive.compression import (
    CompressionOutcome,
    compression_claim,
    compression_cleanup,
    compression_drain,
    compression_pending,
    compression_run,
)
from medvault.archive.ingest import instance_store
from medvault.archive.models import CompressionTask, Instance
from medvault.archive.outcomes import StoreStatus
from medvault.archive.scrub import blob_scrub
from medvault.core.blobs import FilesystemBlobStore

from .helpers import ct_series, read_pixels

pytestmark = pytest.mark.django_db

JPEG_LS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def deferred(settings, blob_dir) -> Path:
    settings.MEDVAULT_COMPRESSION_DEFERRED = True
    settings.MEDVAULT_COMPRESSION = "jpegls"
    return blob_dir


def _ingest(files: list[bytes]) -> list[Instance]:
    results = [instance_store(data=f, source="test") for f in files]
    assert all(r.status == StoreStatus.STORED for r in results), [r.reason for r in results]
    return [r.instance for r in results]


def _blob_files(blob_dir: Path) -> set[str]:
    return {p.name for p in blob_dir.rglob("*") if p.is_file() and "tmp" not in p.relative_to(blob_dir).parts}


def test_deferred_ingest_keeps_the_received_bytes_and_queues_a_task(dicom_data, deferred):
    files = ct_series(dicom_data, 3, seed=11)
    instances = _ingest(files)
    for inst, data in zip(instances, files, strict=True):
        assert inst.transfer_syntax_uid == EXPLICIT_LE
        assert selectors.instance_blob(instance=inst) == data  # bit-exact, as received
    assert CompressionTask.objects.count() == 3
    assert compression_pending() == 3


def test_inline_compression_queues_nothing(dicom_data, settings, blob_dir):
    settings.MEDVAULT_COMPRESSION_DEFERRED = False
    inst = _ingest(ct_series(dicom_data, 1, seed=12))[0]
    assert inst.transfer_syntax_uid == JPEG_LS
    assert not CompressionTask.objects.exists()


def test_drain_swaps_to_bit_exact_jpegls_and_deletes_the_old_blob(dicom_data, deferred, monkeypatch):
    # Cleanup works in batches; the drain must go on until every replaced blob is gone.
    monkeypatch.setattr("medvault.archive.compression.CLEANUP_BATCH", 2)
    files = ct_series(dicom_data, 3, seed=13)
    instances = _ingest(files)
    old_keys = {inst.blob_key for inst in instances}
    stats = compression_drain(keep_seconds=0)
    assert (stats.compressed, stats.failed, stats.kept) == (3, 0, 0)
    assert stats.bytes_after < stats.bytes_before
    assert not CompressionTask.objects.exists()
    for inst, data in zip(instances, files, strict=True):
        inst.refresh_from_db()
        assert inst.transfer_syntax_uid == JPEG_LS
        assert inst.stored_bytes < inst.received_bytes
        assert np.array_equal(selectors.instance_pixels(instance=inst), read_pixels(data))
        native = selectors.instance_part10_bytes(instance=inst, transfer_syntax_uid=EXPLICIT_LE)
        assert np.array_equal(read_pixels(native), read_pixels(data))
    # The originals are gone, and scrub finds nothing missing, corrupt or orphaned.
    assert not (old_keys & _blob_files(deferred))
    report = blob_scrub(min_age_s=0)
    assert (report["missing"], report["corrupt"], report["orphans"]) == ([], [], [])


def test_resend_after_compression_is_still_a_duplicate(dicom_data, deferred):
    files = ct_series(dicom_data, 1, seed=14)
    _ingest(files)
    compression_drain()
    again = instance_store(data=files[0], source="test")
    assert again.status == StoreStatus.DUPLICATE


def full_disk_store(settings: Any) -> FilesystemBlobStore:
    """A filesystem store that cannot write (ENOSPC) but reads what is there."""

    class FullDisk(FilesystemBlobStore):
        def put(self, data: bytes) -> str:
            raise OSError(28, "No space left on device")

    return FullDisk(settings.MEDVAULT_BLOB_DIR)


def test_failed_transcode_leaves_the_original(dicom_data, deferred, settings):
    files = ct_series(dicom_data, 1, seed=15)
    inst = _ingest(files)[0]
    before = _blob_files(deferred)
    settings.MEDVAULT_BLOB_BACKEND = f"{__name__}:full_disk_store"
    stats = compression_drain()
    assert stats.compressed == 0 and stats.failed >= 1
    task = CompressionTask.objects.get(instance=inst)
    assert "No space left" in task.error
    inst.refresh_from_db()
    assert inst.transfer_syntax_uid == EXPLICIT_LE
    assert selectors.instance_blob(instance=inst) == files[0]
    assert _blob_files(deferred) == before


def test_a_blob_that_no_longer_matches_its_pixels_is_not_recompressed(dicom_data, deferred):
    files = ct_series(dicom_data, 1, seed=16)
    inst = _ingest(files)[0]
    path = next(p for p in deferred.rglob(inst.blob_key))
    damaged = bytearray(path.read_bytes())
    start = bytes(damaged).rfind(b"\xe0\x7f\x10\x00OW") + 12  # Pixel Data's value
    damaged[start + 1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    stats = compression_drain()
    assert stats.compressed == 0 and stats.failed >= 1
    inst.refresh_from_db()
    assert inst.blob_key == path.name and inst.transfer_syntax_uid == EXPLICIT_LE
    assert path.read_bytes() == bytes(damaged)  # left for scrub to report, never replaced
    assert "indexed pixels" in CompressionTask.objects.get(instance=inst).error


def test_a_reader_holding_the_row_from_before_the_swap_gets_the_new_blob(dicom_data, deferred):
    files = ct_series(dicom_data, 1, seed=17)
    stale = _ingest(files)[0]  # loaded before the swap, like a WADO request in flight
    task = compression_claim(worker_id="test")
    assert task is not None
    assert compression_run(task=task)[0] is CompressionOutcome.COMPRESSED
    assert compression_cleanup(keep_seconds=0) == 1  # the old blob is gone now
    native = selectors.instance_part10_bytes(instance=stale, transfer_syntax_uid=EXPLICIT_LE)
    assert pydicom.dcmread(__import__("io").BytesIO(native)).file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(read_pixels(native), read_pixels(files[0]))
    assert stale.transfer_syntax_uid == JPEG_LS  # the row was read again


def test_a_claimed_task_is_not_claimed_twice_until_its_lease_ends(dicom_data, deferred):
    _ingest(ct_series(dicom_data, 1, seed=18))
    assert compression_claim(worker_id="a") is not None
    assert compression_claim(worker_id="b") is None
    CompressionTask.objects.update(lease_until=None)  # as if the lease had run out
    assert compression_claim(worker_id="b") is not None


def test_the_worker_compresses_when_it_has_no_analysis_job(dicom_data, deferred, settings):
    from medvault.analysis.worker import worker_run

    settings.MEDVAULT_AUTO_ANALYSE = False
    _ingest(ct_series(dicom_data, 2, seed=19))
    stats = worker_run(stop=threading.Event(), once=True, backend=object())  # type: ignore[arg-type]
    assert stats.compressed == 2
    assert set(Instance.objects.values_list("transfer_syntax_uid", flat=True)) == {JPEG_LS}


def test_the_replaced_blob_is_kept_for_backups_in_flight_and_counted_by_scrub(dicom_data, deferred):
    files = ct_series(dicom_data, 1, seed=20)
    inst = _ingest(files)[0]
    old_key = inst.blob_key
    stats = compression_drain()  # default keeping time: an hour
    assert stats.compressed == 1 and stats.superseded_deleted == 0
    inst.refresh_from_db()
    assert inst.blob_key != old_key and old_key in _blob_files(deferred)
    # A database copy taken before the swap still finds its blob; scrub neither reports the
    # kept blob as an orphan nor deletes it.
    report = blob_scrub(repair=True, min_age_s=0)
    assert report["orphans"] == [] and old_key in _blob_files(deferred)
    assert compression_pending() == 0
    assert compression_cleanup(keep_seconds=0) == 1
    assert old_key not in _blob_files(deferred)
    assert not CompressionTask.objects.exists()
    assert blob_scrub(min_age_s=0)["orphans"] == []


def test_jpegxl_effort_setting_makes_smaller_bit_exact_files(shared_data, settings, blob_dir):
    settings.MEDVAULT_COMPRESSION_DEFERRED = False
    settings.MEDVAULT_COMPRESSION = "jpegxl"
    path = shared_data / "dicom/tcia/PROSTATE-MRI_MR.dcm"  # unsigned, as JPEG-XL needs
    sizes = {}
    for effort in (1, 7):
        settings.MEDVAULT_JPEGXL_EFFORT = effort
        Instance.objects.all().delete()
        inst = instance_store(data=path.read_bytes(), source="test").instance
        assert inst.transfer_syntax_uid == "1.2.840.10008.1.2.4.110"
        assert np.array_equal(selectors.instance_pixels(instance=inst), pydicom.dcmread(path).pixel_array)
        sizes[effort] = inst.stored_bytes
    assert sizes[7] < sizes[1]


# --- scrub --repair --min-age 0 while a worker writes and swaps in the re-encoded blob -------

_PUT_HOOK: list[Any] = []  # called after each put() of the stores below, with the key


def hooked_store(settings: Any) -> FilesystemBlobStore:
    """A filesystem store that runs ``_PUT_HOOK[0](key)`` right after writing a blob."""

    class Hooked(FilesystemBlobStore):
        def put(self, data: bytes) -> str:
            key = super().put(data)
            _PUT_HOOK[0](key)
            return key

    return Hooked(settings.MEDVAULT_BLOB_DIR)


@pytest.fixture
def put_hook(settings: Any) -> Any:
    """Install ``hook(key)`` to run after the worker's put (set after ingest: ingest puts too)."""

    def install(hook: Any) -> None:
        _PUT_HOOK[:] = [hook]
        settings.MEDVAULT_BLOB_BACKEND = f"{__name__}:hooked_store"

    yield install
    _PUT_HOOK.clear()


class _Crash(BaseException):
    """The worker process dies here (not an error compression_run handles)."""


def _assert_bit_exact(inst: Instance, data: bytes) -> None:
    from medvault.core.blobs import blob_key

    inst.refresh_from_db()
    assert inst.transfer_syntax_uid == JPEG_LS
    blob = selectors.instance_blob(instance=inst)
    assert blob_key(blob) == inst.blob_key
    assert np.array_equal(selectors.instance_pixels(instance=inst), read_pixels(data))


def test_scrub_repair_min_age_0_between_the_workers_write_and_swap_keeps_the_new_blob(
    dicom_data, deferred, put_hook
):
    files = ct_series(dicom_data, 1, seed=21)
    inst = _ingest(files)[0]
    old_key = inst.blob_key
    reports: list[dict[str, Any]] = []
    # Scrub runs after the re-encoded blob is written and before the row is swapped to it.
    put_hook(lambda key: reports.append(blob_scrub(repair=True, min_age_s=0)))
    stats = compression_drain()
    assert stats.compressed == 1 and len(reports) == 1
    inst.refresh_from_db()
    assert inst.blob_key != old_key
    assert blob_store().exists(inst.blob_key)  # the row's blob was not deleted
    _assert_bit_exact(inst, files[0])
    report = reports[0]  # nor even reported as an orphan: it is recorded on the task
    assert (report["missing"], report["orphans"], report["deleted"]) == ([], [], [])
    after = blob_scrub(repair=True, min_age_s=0)
    assert (after["missing"], after["corrupt"], after["orphans"]) == ([], [], [])


def test_a_worker_dying_before_or_after_writing_the_new_blob_loses_nothing(
    dicom_data, deferred, put_hook, settings
):
    files = ct_series(dicom_data, 1, seed=22)
    inst = _ingest(files)[0]
    blobs_before = _blob_files(deferred)

    # 1. Dies after recording the new key, before the blob is written: nothing is missing.
    def die_before_writing(self: FilesystemBlobStore, data: bytes) -> str:
        raise _Crash

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FilesystemBlobStore, "put", die_before_writing)
        task = compression_claim(worker_id="a")
        assert task is not None
        with pytest.raises(_Crash):
            compression_run(task=task)
    recorded = CompressionTask.objects.get(instance=inst).new_blob_key
    assert recorded and recorded not in _blob_files(deferred)
    report = blob_scrub(repair=True, min_age_s=0)
    assert (report["missing"], report["orphans"], report["deleted"]) == ([], [], [])
    assert _blob_files(deferred) == blobs_before

    # 2. The task is claimed again (lease over); this attempt dies right after the write.
    def die(key: str) -> None:
        raise _Crash

    put_hook(die)
    CompressionTask.objects.update(lease_until=None)
    task = compression_claim(worker_id="b")
    assert task is not None
    with pytest.raises(_Crash):
        compression_run(task=task)
    assert recorded in _blob_files(deferred)  # deterministic encoder: the same key
    report = blob_scrub(repair=True, min_age_s=0)
    assert (report["missing"], report["orphans"], report["deleted"]) == ([], [], [])
    assert recorded in _blob_files(deferred)  # a recorded blob is not an orphan

    # 3. A third attempt finds the blob there and swaps the row to it.
    settings.MEDVAULT_BLOB_BACKEND = "filesystem"
    CompressionTask.objects.update(lease_until=None)
    task = compression_claim(worker_id="c")
    assert task is not None
    assert compression_run(task=task)[0] is CompressionOutcome.COMPRESSED
    inst.refresh_from_db()
    assert inst.blob_key == recorded
    _assert_bit_exact(inst, files[0])
    assert compression_cleanup(keep_seconds=0) == 1
    report = blob_scrub(repair=True, min_age_s=0)
    assert (report["missing"], report["corrupt"], report["orphans"]) == ([], [], [])


def test_a_worker_whose_task_was_claimed_again_does_not_swap(dicom_data, deferred, put_hook, settings):
    files = ct_series(dicom_data, 1, seed=23)
    inst = _ingest(files)[0]
    old_key = inst.blob_key
    taken: list[Any] = []

    def lease_runs_out_and_b_claims(key: str) -> None:
        CompressionTask.objects.update(lease_until=None)
        taken.append(compression_claim(worker_id="b"))

    put_hook(lease_runs_out_and_b_claims)
    slow = compression_claim(worker_id="a")
    assert slow is not None
    assert compression_run(task=slow)[0] == "gone"  # b owns the task now: a must not swap
    inst.refresh_from_db()
    assert inst.blob_key == old_key and inst.transfer_syntax_uid == EXPLICIT_LE
    settings.MEDVAULT_BLOB_BACKEND = "filesystem"
    assert taken[0] is not None and compression_run(task=taken[0])[0] is CompressionOutcome.COMPRESSED
    _assert_bit_exact(inst, files[0])
    report = blob_scrub(repair=True, min_age_s=0)
    assert (report["missing"], report["corrupt"], report["orphans"]) == ([], [], [])
