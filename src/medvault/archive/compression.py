"""Deferred compression: the worker re-encodes instances that ingest kept as received.

With ``MEDVAULT_COMPRESSION_DEFERRED`` on, ingest writes the received bytes (durable,
indexed, visible, bit-exact) and queues a ``CompressionTask`` in the same transaction. A
worker (``medvault worker`` when it has no analysis job, or ``medvault compress``) then:

1. claims the task from the shared lease queue (``medvault.archive.jobs``, ``TASKS``): a
   conditional ``UPDATE`` with a lease; a failed attempt comes back after a backoff, and the
   task is ``failed`` (the instance stays as received) after ``MEDVAULT_JOB_MAX_ATTEMPTS``;
2. reads the stored blob and checks that it still decodes to the indexed pixels
   (``pixel_sha256``);
3. re-encodes it with ``MEDVAULT_COMPRESSION`` as inline ingest would (``storage_bytes``);
4. decodes the new Part 10 file, as a reader will, and compares the hash of every pixel
   with the index (inline ingest compares the in-memory frames instead);
5. records the new blob's key (its SHA-256) on the task in a committed ``UPDATE``;
6. writes the new blob durably, then swaps the row to it in one transaction whose ``UPDATE``
   only matches while this attempt still owns the task (same worker, same claim) with that key
   recorded and the row still points at the old blob, and marks the task swapped (keeping the
   old blob's key);
7. once the swap is ``MEDVAULT_COMPRESSION_KEEP_SECONDS`` old, deletes the old blob (when no
   row or other app refers to it) and the task.

A crash at any step leaves the row pointing at a complete blob: the original until the swap
commits, the verified re-encoding after it. Scrub counts the recorded new blob as referenced
(``new_blob_refs``) from before it is written until the task row is deleted, so even
``scrub --repair --min-age 0`` never deletes it under a worker (see ``new_blob_refs`` for
why the order makes this safe). The record is replaced only by a later attempt of the same
task (which, the encoder being deterministic, usually records the same key: a blob written
before a crash stays protected and is reused) and dropped with the task row; a blob written by
an attempt that did not swap becomes an orphan for ``medvault scrub --repair`` then. The old
blob is kept a while after the swap so that a backup whose database copy was taken just before
the swap still finds every blob it names; until then scrub counts it as referenced. A reader
that loaded the row before a swap and finds the old blob gone reads the row again
(``archive.selectors.instance_blob``).

``compression_run`` must run outside ``transaction.atomic``: the record of step 5 protects the
blob only once it is committed.
"""

from __future__ import annotations

import enum
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from io import BytesIO

import pydicom
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from medvault.archive import conf
from medvault.archive.blobstore import blob_store
from medvault.archive.conf import parse_limits
from medvault.archive.jobs import JobState, LeaseQueue, worker_identity
from medvault.archive.models import CompressionTask, Instance
from medvault.archive.scrub import referenced_elsewhere
from medvault.archive.storage_form import NATIVE_UNCOMPRESSED, storage_bytes
from medvault.core.blobs import BlobNotFound, BlobStore, blob_key
from medvault.core.codecs import decode_pixels
from medvault.core.codecs.native_recompress import decode_spliced, native_image, recompress_native
from medvault.core.dicom.parse import DicomRejected, parse_instance, pixel_sha256

log = logging.getLogger(__name__)

class CompressionOutcome(enum.StrEnum):
    """What one attempt at a task came to."""

    COMPRESSED = "compressed"  # the blob was swapped for its lossless re-encoding
    KEPT = "kept"  # nothing to gain (codec refused, not smaller, setting is "none"): as received
    FAILED = "failed"  # this attempt failed; the original blob is untouched
    GONE = "gone"  # the instance was deleted or changed under us, or another worker took the task


@dataclass
class CompressionStats:
    compressed: int = 0
    kept: int = 0
    failed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    superseded_deleted: int = 0
    errors: list[str] = field(default_factory=list)


CLEANUP_BATCH = 500  # superseded blobs deleted per ``compression_cleanup`` call
# Tasks ``compression_drain`` claims per query, whose keys it records in one transaction and
# whose rows it swaps in another (a lease covers them all: a batch takes well under a second).
DRAIN_BATCH = 8



# Columns as ``archive.jobs`` names them by default; the task is done at its swap.
TASKS: LeaseQueue[CompressionTask] = LeaseQueue(CompressionTask, error_max=2000)


def compression_pending() -> int:
    """Tasks still to do (failed ones that ran out of attempts are not counted)."""
    return TASKS.pending().count()


def superseded_blob_refs() -> list[tuple[str, str]]:
    """(key, label) of old blobs kept after a swap; scrub counts them as referenced."""
    return [
        (key, f"superseded by compression of instance {instance_id}")
        for key, instance_id in CompressionTask.objects.filter(swapped_at__isnull=False)
        .exclude(old_blob_key="")
        .values_list("old_blob_key", "instance_id")
    ]


def new_blob_refs() -> list[tuple[str, str]]:
    """(key, label) of re-encoded blobs recorded on a task; scrub counts them as referenced.

    Why this makes ``scrub --repair --min-age 0`` safe for a blob K that a worker writes: the
    worker commits ``new_blob_key = K`` (time R) before ``put`` creates K (P), and swaps the
    row to K (S) only in a transaction that still finds K recorded under its own claim; the
    record then stays until the task row is deleted (C), at least
    ``MEDVAULT_COMPRESSION_KEEP_SECONDS`` after S. Scrub deletes a blob only if it listed it
    (time L), then found no referrer naming it (``referenced_elsewhere``, B) and then no
    ``Instance`` row on it (A), in that order: R < P < L < B < A. If B < C the record is seen
    (and K, listed at L, still exists) and K is kept. If B > C, then S < C < B < A: the row
    points at K when scrub looks it up, and K is kept. An attempt that never swaps cannot make
    a row point at K, so deleting its blob once the record is replaced or gone is right.

    What this does not cover: bytes K that already lay in the store, unrecorded, before R (an
    orphan with the same content). A scrub may have checked K before R and delete it after
    ``put`` found it present; scrub's check and delete are not atomic, as for ingest.

    A recorded blob not (yet) written is left out before the swap, so that scrub does not
    report it as missing (a worker between steps 5 and 6, or one that crashed there).
    """
    store: BlobStore | None = None
    refs: list[tuple[str, str]] = []
    for key, instance_id, swapped_at in CompressionTask.objects.filter(
        new_blob_key__isnull=False
    ).values_list("new_blob_key", "instance_id", "swapped_at"):
        if not key:
            continue
        if swapped_at is None:
            store = store or blob_store()
            if not store.exists(key):
                continue
            refs.append((key, f"re-encoding of instance {instance_id} (compression in progress)"))
        else:
            refs.append((key, f"re-encoding of instance {instance_id} (compressed)"))
    return refs


def compression_cleanup(*, keep_seconds: float | None = None) -> int:
    """Delete old blobs whose swap is older than ``keep_seconds``, and their tasks.

    Returns how many tasks were finished. A blob another row still refers to is kept.
    """
    keep = conf.compression_keep_seconds() if keep_seconds is None else keep_seconds
    cutoff = timezone.now() - timedelta(seconds=keep)
    store = blob_store()
    finished = 0
    for task_id, old_key in list(
        CompressionTask.objects.filter(swapped_at__isnull=False, swapped_at__lte=cutoff)
        .values_list("id", "old_blob_key")[:CLEANUP_BATCH]
    ):
        # The task row goes first: from then on scrub may call the blob an orphan, and it is.
        if not CompressionTask.objects.filter(id=task_id).delete()[0]:
            continue  # another worker finished it
        finished += 1
        if (
            old_key
            and not Instance.objects.filter(blob_key=old_key).exists()
            and not referenced_elsewhere(old_key)
        ):
            try:
                store.delete(old_key)
            except OSError as exc:
                log.warning("could not delete superseded blob %s: %s (scrub will)", old_key, exc)
    return finished


def compression_claim(*, worker_id: str) -> CompressionTask | None:
    """Claim the oldest claimable task for ``worker_id``, or None when there is none."""
    return TASKS.claim(worker_id=worker_id)


def _owned(task: CompressionTask) -> QuerySet[CompressionTask]:
    """The task's row while this attempt still owns it (see ``LeaseQueue.owned``): a worker
    whose lease ran out and whose task was claimed again matches nothing."""
    return TASKS.owned(task)


def _fail(task: CompressionTask, error: str) -> CompressionOutcome:
    """Record the failed attempt: claimable again after the backoff, or failed for good.

    ``new_blob_key`` is left as it is: a blob the attempt may have written stays protected
    until the next attempt records its own key (usually the same one) or the task is deleted.
    """
    log.warning("compression of instance %s failed: %s", task.instance_id, error)
    TASKS.retry(task, error=error)
    return CompressionOutcome.FAILED


@dataclass
class _Attempt:
    """One task's attempt: what ``_prepare`` worked out (no database), for ``_finish``."""

    task: CompressionTask
    outcome: CompressionOutcome | None = None  # decided before any write (GONE, FAILED, KEPT)
    error: str = ""
    old_key: str = ""
    before: int = 0
    blob: bytes = b""
    new_ts: str = ""
    new_key: str = ""
    fast: bool = False  # taken by the native fast path


def _verified_native(data: bytes, instance: Instance) -> tuple[bytes, str] | None:
    """The fast path: re-encode the native pixels viewed in ``data``, and decode the exact
    bytes that will be kept. None when it does not apply (the general path decides then).

    It applies only when the viewed bytes hash to the indexed pixels: then they are exactly
    the pixels a reader decodes from the stored blob, so nothing is assumed about the file.
    """
    image = native_image(data)
    if image is None or instance.transfer_syntax_uid not in NATIVE_UNCOMPRESSED:
        return None
    if str(image.header.get("LossyImageCompression", "")) == "01":
        return None
    if pixel_sha256(image.pixels) != instance.pixel_sha256:
        return None
    spliced = recompress_native(data, image, conf.compression_codec(), jpegxl_effort=conf.jpegxl_effort())
    if spliced is None:
        return None
    # Decode the bytes to be kept, as a reader will, and compare every pixel with the index;
    # a failure here is a failed attempt (recorded), never a swap.
    try:
        decoded = decode_spliced(spliced, image.header)
    except (ValueError, RuntimeError, TypeError, AttributeError, KeyError, EOFError) as exc:
        raise _NotVerified(f"the re-encoded file does not decode: {exc}") from None
    if pixel_sha256(decoded) != instance.pixel_sha256:
        raise _NotVerified("the re-encoded file decodes to different pixels; left as is")
    return spliced.data, spliced.transfer_syntax_uid


class _NotVerified(Exception):
    """The re-encoding did not decode to the indexed pixels."""


def _prepare(task: CompressionTask, instance: Instance | None, store: BlobStore) -> _Attempt:
    """Read, re-encode and verify one instance; touches no database."""
    attempt = _Attempt(task)
    if instance is None:
        attempt.outcome = CompressionOutcome.GONE
        return attempt
    old_key, old_ts = instance.blob_key, instance.transfer_syntax_uid
    attempt.old_key = old_key
    try:
        data = store.get(old_key)  # read once: both paths work on these bytes
    except BlobNotFound:
        return _failed(attempt, f"stored blob {old_key} is missing")
    attempt.before = len(data)
    try:
        fast = _verified_native(data, instance)
    except _NotVerified as exc:
        return _failed(attempt, str(exc))
    except (ValueError, RuntimeError, MemoryError, TypeError, AttributeError, KeyError) as exc:
        return _failed(attempt, f"re-encoding failed: {exc}")
    if fast is not None:
        attempt.blob, attempt.new_ts = fast
        attempt.fast = True
    else:
        try:
            attempt.blob, attempt.new_ts = _general(data, instance)
        except _NotVerified as exc:
            return _failed(attempt, str(exc))
        if attempt.new_ts == old_ts or attempt.blob is data:
            attempt.outcome = CompressionOutcome.KEPT
            return attempt
    attempt.new_key = blob_key(attempt.blob)
    return attempt


def _failed(attempt: _Attempt, error: str) -> _Attempt:
    attempt.outcome, attempt.error = CompressionOutcome.FAILED, error
    return attempt


def _general(data: bytes, instance: Instance) -> tuple[bytes, str]:
    """Any stored form: parse the blob, re-encode as inline ingest would, decode the new
    Part 10 file with pydicom and compare. Raises ``_NotVerified`` with the reason."""
    try:
        limits = parse_limits()
        parsed = parse_instance(
            data, with_metadata=False,
            max_image_pixels=limits.max_image_pixels, max_decoded_bytes=limits.max_decoded_bytes,
        )
    except DicomRejected as exc:
        raise _NotVerified(f"stored blob no longer parses: {exc.reason}") from None
    if parsed.pixel_sha256 != instance.pixel_sha256:
        raise _NotVerified("stored blob does not decode to the indexed pixels; left as is")
    try:
        # The in-memory round trip is skipped: the file itself is decoded just below.
        blob, new_ts = storage_bytes(parsed, data, verify=False)
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise _NotVerified(f"re-encoding failed: {exc}") from None
    if new_ts == instance.transfer_syntax_uid or blob is data:
        return blob, new_ts
    # An independent check of the file that will be kept, as a reader will decode it.
    try:
        check = decode_pixels(pydicom.dcmread(BytesIO(blob)))
    except (ValueError, RuntimeError, TypeError, AttributeError, KeyError, EOFError) as exc:
        raise _NotVerified(f"the re-encoded file does not decode: {exc}") from None
    if parsed.pixels is None or pixel_sha256(check.reshape(parsed.pixels.shape)) != instance.pixel_sha256:
        raise _NotVerified("the re-encoded file decodes to different pixels; left as is")
    return blob, new_ts


def _finish(attempts: list[_Attempt], store: BlobStore) -> list[tuple[CompressionOutcome, int, int]]:
    """Record, write and swap the prepared attempts (steps 5-6), several per transaction."""
    results: dict[int, tuple[CompressionOutcome, int, int]] = {}
    live: list[_Attempt] = []
    for index, attempt in enumerate(attempts):
        if attempt.outcome is CompressionOutcome.FAILED:
            results[index] = (_fail(attempt.task, attempt.error), 0, 0)
        elif attempt.outcome is CompressionOutcome.KEPT:
            CompressionTask.objects.filter(pk=attempt.task.pk).delete()
            results[index] = (CompressionOutcome.KEPT, attempt.before, attempt.before)
        elif attempt.outcome is CompressionOutcome.GONE:
            results[index] = (CompressionOutcome.GONE, 0, 0)
        else:
            live.append(attempt)
    # Record every new blob's key, committed, before the blob exists: from here on scrub
    # counts it as referenced (new_blob_refs), so it cannot take it for an orphan while it is
    # written or before the row is swapped to it. The key is the content address that every
    # store's put() returns (checked below). One commit for the batch.
    recorded: list[_Attempt] = []
    with transaction.atomic():
        for attempt in live:
            if _owned(attempt.task).update(new_blob_key=attempt.new_key):
                recorded.append(attempt)
            else:  # the lease ran out and another worker claimed the task, or it is done
                results[attempts.index(attempt)] = (CompressionOutcome.GONE, 0, 0)
    written: list[_Attempt] = []
    for attempt in recorded:
        index = attempts.index(attempt)
        try:
            key = store.put(attempt.blob)
        except OSError as exc:
            results[index] = (_fail(attempt.task, f"writing the re-encoded blob failed: {exc}"), 0, 0)
            continue
        if key != attempt.new_key:  # a store that names blobs otherwise: nothing protects that blob
            results[index] = (
                _fail(attempt.task, f"the blob store stored the re-encoded blob as {key}, not {attempt.new_key}"),
                0, 0,
            )
            continue
        written.append(attempt)
    swapped_now: list[tuple[_Attempt, bool, bool]] = []
    with transaction.atomic():
        for attempt in written:
            task, old_key, new_key = attempt.task, attempt.old_key, attempt.new_key
            # The task first, and only while this attempt still owns it with new_key recorded:
            # a worker whose lease was taken over must not swap to a blob whose record the new
            # owner may replace. new_blob_key is kept after the swap (until the task row goes)
            # so that the record and the row's reference to the blob overlap.
            owned = _owned(task).filter(new_blob_key=new_key).update(
                old_blob_key=old_key if old_key != new_key else "",
                swapped_at=timezone.now(), status=JobState.DONE, lease_until=None, error="",
            )
            swapped = 0
            if owned:
                swapped = Instance.objects.filter(pk=task.instance_id, blob_key=old_key).update(
                    blob_key=new_key, transfer_syntax_uid=attempt.new_ts, stored_bytes=len(attempt.blob)
                )
                if not swapped:
                    CompressionTask.objects.filter(pk=task.pk).delete()
            swapped_now.append((attempt, bool(owned), bool(swapped)))
    for attempt, owned, swapped in swapped_now:
        index = attempts.index(attempt)
        if not owned or not swapped:
            # Another worker owns the task now (its record decides what happens to new_key),
            # or the row changed or went meanwhile (an unreferenced new blob is left to scrub).
            results[index] = (CompressionOutcome.GONE, 0, 0)
        else:
            results[index] = (CompressionOutcome.COMPRESSED, attempt.before, len(attempt.blob))
    return [results[index] for index in range(len(attempts))]


_INSTANCE_FIELDS = ("id", "blob_key", "transfer_syntax_uid", "pixel_sha256")


def _instances(tasks: list[CompressionTask]) -> dict[int, Instance]:
    return Instance.objects.only(*_INSTANCE_FIELDS).in_bulk([task.instance_id for task in tasks])


def _prepare_all(
    tasks: list[CompressionTask], instances: dict[int, Instance], store: BlobStore
) -> list[_Attempt]:
    return [_prepare(task, instances.get(task.instance_id), store) for task in tasks]


def compression_run_many(tasks: list[CompressionTask]) -> list[tuple[CompressionOutcome, int, int]]:
    """Run several claimed tasks: one query for their instances, one transaction to record
    the new keys and one to swap (every step per task as ``compression_run`` describes)."""
    if not tasks:
        return []
    store = blob_store()
    return _finish(_prepare_all(tasks, _instances(tasks), store), store)


def compression_run(*, task: CompressionTask) -> tuple[CompressionOutcome, int, int]:
    """Re-encode one claimed task's instance; returns (outcome, bytes before, bytes after).

    Never raises for a bad blob or codec: the attempt is recorded as failed and the
    original blob stays in place.
    """
    return compression_run_many([task])[0]


_CLEANUP_EVERY_S = 60.0
_last_cleanup = float("-inf")


def compression_batch(*, worker_id: str, count: int = DRAIN_BATCH) -> list[CompressionOutcome]:
    """Claim up to ``count`` tasks in one query and run them (``compression_run_many``);
    [] when there was nothing to claim. For ``medvault worker``'s idle loop: a batch of 8
    slices takes a fraction of a second, so an analysis job waits at most that long.

    With nothing to claim, superseded blobs whose keeping time is over are deleted.
    """
    global _last_cleanup
    tasks = TASKS.claim_many(worker_id=worker_id, count=count)
    if not tasks:
        now = time.monotonic()
        if now - _last_cleanup >= _CLEANUP_EVERY_S:  # not on every idle poll
            _last_cleanup = now
            compression_cleanup()
        return []
    return [outcome for outcome, _, _ in compression_run_many(tasks)]


def compression_step(*, worker_id: str) -> CompressionOutcome | None:
    """Claim and run one task; None when there was nothing to claim (see ``compression_batch``)."""
    outcomes = compression_batch(worker_id=worker_id, count=1)
    return outcomes[0] if outcomes else None


def compression_drain(
    *, worker_id: str | None = None, limit: int | None = None, keep_seconds: float | None = None
) -> CompressionStats:
    """Run tasks until none is claimable (or ``limit`` were run), then delete superseded
    blobs older than ``keep_seconds`` (default MEDVAULT_COMPRESSION_KEEP_SECONDS); for
    ``medvault compress``."""
    wid = worker_id or worker_identity(":compress")
    stats = CompressionStats()
    done = 0
    store = blob_store()

    def claim() -> list[CompressionTask]:
        count = DRAIN_BATCH if limit is None else min(DRAIN_BATCH, limit - claimed)
        return TASKS.claim_many(worker_id=wid, count=count) if count > 0 else []

    # A pipeline of two: one thread reads, encodes and verifies a batch (no database) while
    # this one records, writes (fsync) and swaps the batch before it, so the disk's wait
    # and the codec's work overlap. The database is used from this thread only.
    claimed = 0
    tasks = claim()
    claimed += len(tasks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compress") as pool:
        pending = pool.submit(_prepare_all, tasks, _instances(tasks), store) if tasks else None
        while pending is not None:
            attempts = pending.result()
            current = tasks
            tasks = claim()
            claimed += len(tasks)
            pending = pool.submit(_prepare_all, tasks, _instances(tasks), store) if tasks else None
            for task, (outcome, before, after) in zip(current, _finish(attempts, store), strict=True):
                done += 1
                if outcome is CompressionOutcome.COMPRESSED:
                    stats.compressed += 1
                    stats.bytes_before += before
                    stats.bytes_after += after
                elif outcome is CompressionOutcome.KEPT:
                    stats.kept += 1
                elif outcome is CompressionOutcome.FAILED:
                    stats.failed += 1
                    task.refresh_from_db()
                    stats.errors.append(f"instance {task.instance_id}: {task.error}")
    while True:  # cleanup works in batches
        finished = compression_cleanup(keep_seconds=keep_seconds)
        stats.superseded_deleted += finished
        if not finished:
            break
    return stats
