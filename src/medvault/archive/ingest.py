"""The one ingest service every door (CLI, web, STOW-RS, C-STORE) calls.

Order of work for one instance: parse and validate (decode every frame) -> look for the
SOP Instance UID (duplicate / conflicting re-send) -> re-encode losslessly and verify ->
write the blob durably -> index it in one transaction -> run the stored hooks on commit.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from medvault.archive import conf
from medvault.archive.blobstore import blob_store
from medvault.archive.duplicates import existing_in_group
from medvault.archive.indexing import AlreadyStored, IndexRejected, index_instance
from medvault.archive.models import Instance
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
