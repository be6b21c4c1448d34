"""The one ingest service every door (CLI, web, STOW-RS, C-STORE) calls.

Order of work for one instance: parse and validate (decode every frame) -> look for the
SOP Instance UID (duplicate / conflicting re-send) -> re-encode losslessly and verify ->
write the blob durably -> index it in one transaction -> run the stored hooks on commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.db import DatabaseError, transaction

from medvault.archive import conf
from medvault.archive.blobstore import blob_store
from medvault.archive.duplicates import existing_in_group
from medvault.archive.indexing import AlreadyStored, IndexRejected, index_instance
from medvault.archive.models import Instance, Series
from medvault.archive.outages import is_database_unavailable, is_storage_full
from medvault.archive.outcomes import RejectReason, StoreResult, StoreStatus
from medvault.archive.storage_form import as_received, compression_applies, storage_bytes
from medvault.core.dicom.parse import (
    DicomRejected,
    DicomTooLarge,
    NestedTooDeeply,
    NotStorageClass,
    ParsedInstance,
    parse_instance,
)
from medvault.core.dicom.structure import NESTING_REASON, StructureTooLarge, dataset_structure_check


def parse_refusal(exc: DicomRejected) -> RejectReason:
    """What kind of refusal a ``DicomRejected`` is."""
    if isinstance(exc, DicomTooLarge):
        return RejectReason.TOO_LARGE
    if isinstance(exc, NestedTooDeeply):
        return RejectReason.STRUCTURE_TOO_LARGE
    if isinstance(exc, NotStorageClass):
        return RejectReason.NOT_STORAGE_CLASS
    return RejectReason.INVALID


def resolve_group(group: Group | str | None) -> Group | None:
    """The group itself, or the group of that name (created when new); ``None`` for none."""
    if group is None or isinstance(group, Group):
        return group
    name = str(group).strip()
    if not name:
        return None
    found, _ = Group.objects.get_or_create(name=name[:150])
    return found


def instance_store(
    *,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    path: str = "",
    transfer_syntax_uid: str | None = None,
    defer_compression: bool | None = None,
) -> StoreResult:
    """Validate, de-duplicate, compress and index one DICOM instance.

    Parameters
    ----------
    data
        A DICOM Part 10 file, or a bare data set when ``transfer_syntax_uid`` says how it is
        encoded (e.g. the accepted presentation context of a C-STORE).
    source
        Which door it came through: "cli", "web", "stow", "c-store".
    user, group
        Who uploaded it, and the group (a ``Group`` or its name) it is stored into: the
        group's namespace. The door decides the group (``permissions.ingest_group`` for
        users, the AE's group for C-STORE, ``--group`` for the CLI, the study's group for
        analysis exports); here a UID that another group holds is refused
        (``RejectReason.OTHER_GROUP``), and patients are found per group.
    path
        A display name for the result only; it never becomes a filesystem path.
    defer_compression
        Keep what arrived and let the compression worker re-encode it later (``True``), or
        compress before returning (``False``); ``None`` follows
        ``MEDVAULT_COMPRESSION_DEFERRED``.
    """
    parsed = instance_parse(data=data, transfer_syntax_uid=transfer_syntax_uid, path=path)
    if isinstance(parsed, StoreResult):
        return parsed
    return parsed_store(
        parsed=parsed, data=data, source=source, user=user, group=group, path=path,
        defer_compression=defer_compression,
    )


def instance_parse(
    *, data: bytes, transfer_syntax_uid: str | None = None, path: str = ""
) -> ParsedInstance | StoreResult:
    """The first half of ``instance_store``: the parsed instance, or the rejection.

    For callers that must look at the data set before it is stored (STOW-RS checks the
    study in its URL) without reading it twice.
    """
    max_depth, max_elements = conf.structure_limits()
    limits = conf.parse_limits()
    try:
        parsed = parse_instance(
            data, transfer_syntax_uid=transfer_syntax_uid,
            max_image_pixels=limits.max_image_pixels, max_decoded_bytes=limits.max_decoded_bytes,
        )
    except DicomRejected as exc:
        reason = exc.reason
        if isinstance(exc, NestedTooDeeply):
            # pydicom reads and converts sequences recursively: a data set nested hundreds of
            # levels deep exhausts the stack before the structure check below can run.
            reason = NESTING_REASON.format(limit=max_depth)
        return StoreResult.refused(parse_refusal(exc), reason, sop_instance_uid=exc.sop_instance_uid, path=path)
    try:
        dataset_structure_check(parsed.dataset, max_depth=max_depth, max_elements=max_elements)
    except StructureTooLarge as exc:
        return StoreResult.refused(
            RejectReason.STRUCTURE_TOO_LARGE, str(exc), sop_instance_uid=parsed.sop_instance_uid, path=path
        )
    return parsed


def parsed_store(
    *,
    parsed: ParsedInstance,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    path: str = "",
    defer_compression: bool | None = None,
) -> StoreResult:
    """The second half of ``instance_store``, for an instance from ``instance_parse``."""
    uid = parsed.sop_instance_uid
    resolved_group = resolve_group(group)
    existing = Instance.objects.filter(sop_instance_uid=uid).first()
    if existing is not None:
        return existing_in_group(existing, parsed, resolved_group, path)
    deferred = conf.compression_deferred() if defer_compression is None else defer_compression
    compress_later = deferred and compression_applies(parsed)
    if compress_later:
        # Deferred compression: keep what arrived now; the worker re-encodes it later
        # (``medvault.archive.compression``) and swaps the blob once verified.
        blob, stored_ts = as_received(parsed, data), parsed.received_transfer_syntax_uid
    else:
        blob, stored_ts = storage_bytes(parsed, data)
    # Durable before visible: the blob is on disk before the row that points at it commits.
    key = blob_store().put(blob)
    try:
        with transaction.atomic():
            instance = index_instance(
                parsed,
                blob_key=key,
                stored_ts=stored_ts,
                received_bytes=len(data),
                stored_bytes=len(blob),
                source=source,
                user=user,
                group=resolved_group,
                compress_later=compress_later,
            )
    except AlreadyStored:
        # A concurrent writer won; the blob we wrote is either shared (same bytes) or an
        # orphan for ``medvault scrub`` — never deleted here, as another row may use it.
        existing = Instance.objects.get(sop_instance_uid=uid)
        return existing_in_group(existing, parsed, resolved_group, path)
    except IndexRejected as exc:
        return StoreResult.refused(exc.reject, exc.reason, sop_instance_uid=uid, path=path)
    return StoreResult(StoreStatus.STORED, uid, None, instance, path)


# Parts of one request stored behind one blob barrier and one index transaction.
BATCH_SIZE = 32

# What storing one instance may raise that is that instance's own failure (a value pydicom
# cannot write, a row the database refuses): the other instances of a batch go on. The two
# outages (database unreachable, storage full) are raised instead: every instance would fail.
ITEM_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, OSError, RecursionError, ValueError)


def is_outage(exc: BaseException) -> bool:
    return is_database_unavailable(exc) or is_storage_full(exc)


@dataclass
class BatchItem:
    """One instance of a batch: parsed by ``instance_parse``, with the bytes that arrived."""

    parsed: ParsedInstance
    data: bytes
    path: str = ""


def _item_store(item: BatchItem, **kwargs: Any) -> StoreResult | BaseException:
    try:
        return parsed_store(parsed=item.parsed, data=item.data, path=item.path, **kwargs)
    except ITEM_ERRORS as exc:
        if is_outage(exc):
            raise
        return exc


def parsed_store_batch(
    items: Sequence[BatchItem],
    *,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    defer_compression: bool | None = None,
) -> list[StoreResult | BaseException]:
    """``parsed_store`` for several instances at once, each with its own outcome.

    One query finds the UIDs already stored; the new instances' blobs are written behind one
    durability barrier (``put_many`` where the blob store has it); then ONE transaction
    indexes them all, each inside its own savepoint, so a refused or failing instance rolls
    back alone and the others commit. Nothing is visible before its blob is on disk, and a
    crash leaves either the whole batch indexed or none of it (orphan blobs at most, which
    ``medvault scrub`` removes).

    Returns, in order, each instance's ``StoreResult`` or the exception (one of
    ``ITEM_ERRORS``) that failed it alone; an outage (``is_outage``) is raised.
    """
    kwargs: dict[str, Any] = {"source": source, "user": user, "defer_compression": defer_compression}
    resolved_group = resolve_group(group)
    results: list[StoreResult | BaseException | None] = [None] * len(items)
    uids = [item.parsed.sop_instance_uid for item in items]
    existing = {row.sop_instance_uid: row for row in Instance.objects.filter(sop_instance_uid__in=set(uids))}
    deferred = conf.compression_deferred() if defer_compression is None else defer_compression
    todo: list[tuple[int, bytes, str, bool]] = []  # (index, blob, stored syntax, compress later)
    for index, item in enumerate(items):
        found = existing.get(uids[index])
        if found is not None:
            results[index] = existing_in_group(found, item.parsed, resolved_group, item.path)
            continue
        try:
            compress_later = deferred and compression_applies(item.parsed)
            if compress_later:
                blob, stored_ts = as_received(item.parsed, item.data), item.parsed.received_transfer_syntax_uid
            else:
                blob, stored_ts = storage_bytes(item.parsed, item.data)
        except ITEM_ERRORS as exc:
            if is_outage(exc):
                raise
            results[index] = exc
            continue
        todo.append((index, blob, stored_ts, compress_later))
    store = blob_store()
    try:
        # Durable before visible: every blob is on disk before the transaction that points at it.
        put_many = getattr(store, "put_many", None)
        keys = put_many([blob for _, blob, _, _ in todo]) if put_many else [store.put(b) for _, b, _, _ in todo]
        clashes: list[int] = []
        # Series indexed into by this transaction: read once, not once per instance. Only
        # a savepoint that was released adds to it (a rolled-back one may have created it).
        known: dict[str, Series] = {}
        # Indexed in the order of their study (then series) UIDs: every batch takes its study
        # row locks in one global order, so two concurrent batches that hold instances of the
        # same studies queue instead of deadlocking (PostgreSQL, InnoDB).
        order = sorted(range(len(todo)), key=lambda n: (
            str(items[todo[n][0]].parsed.dataset.StudyInstanceUID),
            str(items[todo[n][0]].parsed.dataset.SeriesInstanceUID), n))
        with transaction.atomic():
            for (index, blob, stored_ts, compress_later), key in ((todo[n], keys[n]) for n in order):
                item = items[index]
                try:
                    with transaction.atomic():  # a savepoint: this instance alone rolls back
                        instance = index_instance(
                            item.parsed, blob_key=key, stored_ts=stored_ts, received_bytes=len(item.data),
                            stored_bytes=len(blob), source=source, user=user, group=resolved_group,
                            compress_later=compress_later, known=known,
                        )
                except AlreadyStored:
                    clashes.append(index)  # a concurrent writer, or the same UID twice in the batch
                except IndexRejected as exc:
                    results[index] = StoreResult.refused(
                        exc.reject, exc.reason, sop_instance_uid=uids[index], path=item.path)
                except ITEM_ERRORS as exc:
                    if is_outage(exc):
                        raise
                    results[index] = exc
                else:
                    known[instance.series.series_instance_uid] = instance.series
                    results[index] = StoreResult(StoreStatus.STORED, uids[index], None, instance, item.path)
    except ITEM_ERRORS as exc:
        if is_outage(exc):
            raise
        # The batch as a whole failed (its commit, say): nothing of it is indexed. Each
        # instance not yet answered is stored on its own, so that only its own fault fails it.
        for index, _, _, _ in todo:
            results[index] = _item_store(items[index], group=resolved_group, **kwargs)
        clashes = []
    for index in clashes:
        item = items[index]
        stored = Instance.objects.get(sop_instance_uid=uids[index])
        results[index] = existing_in_group(stored, item.parsed, resolved_group, item.path)
    return [result if result is not None else RuntimeError("not stored") for result in results]
