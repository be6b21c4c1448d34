"""Blob scrub: re-hash every blob and compare the blob store with the index.

Other apps declare the blobs they point to with ``register_blob_referrer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance
from medvault.core.blobs import BlobCorrupt, BlobNotFound, blob_verify

_blob_referrers: list[Callable[[], Any]] = []


def register_blob_referrer(fn: Callable[[], Any]) -> None:
    """Let another app declare blobs it points to: ``fn()`` yields ``(key, label)`` pairs.

    ``blob_scrub`` counts them as referenced (e.g. the analysis app's heat-map overlays), so
    they are checked for corruption and never reported or deleted as orphans.
    """
    if fn not in _blob_referrers:
        _blob_referrers.append(fn)


def referenced_elsewhere(key: str) -> bool:
    """True when a registered referrer (not an instance row) points to the blob."""
    return any(key == ref for fn in _blob_referrers for ref, _label in fn())


def blob_scrub(*, repair: bool = False, min_age_s: float = 3600.0) -> dict[str, Any]:
    """Re-hash every blob and compare the store with the index.

    Returns ``missing`` (rows whose blob is absent), ``corrupt`` (blobs whose bytes no
    longer hash to their key), ``orphans`` (blobs no row points to, older than
    ``min_age_s`` so that an ingest in flight is not counted), and ``deleted`` (orphans
    removed when ``repair``). Nothing a row points to is ever deleted.
    """
    store = blob_store()
    referenced: dict[str, list[str]] = {}
    for key, uid in Instance.objects.values_list("blob_key", "sop_instance_uid").iterator():
        referenced.setdefault(key, []).append(uid)
    for referrer in list(_blob_referrers):
        for key, label in referrer():
            referenced.setdefault(key, []).append(label)
    report: dict[str, Any] = {
        "rows_checked": sum(len(v) for v in referenced.values()),
        "blobs_checked": 0,
        "missing": [],
        "corrupt": [],
        "orphans": [],
        "young_unreferenced": 0,
        "deleted": [],
    }
    seen: set[str] = set()
    for key in store.iter_keys():
        seen.add(key)
        report["blobs_checked"] += 1
        if key not in referenced:
            age = getattr(store, "age_seconds", None)
            try:
                young = age is not None and age(key) < min_age_s
            except BlobNotFound:
                continue
            if young:
                report["young_unreferenced"] += 1
                continue
            report["orphans"].append(key)
            # A backend that cannot tell a blob's age may hold the blob of an ingest that
            # has not committed yet: delete only when the operator asked for --min-age 0.
            aged = age is not None or min_age_s <= 0
            # Re-check at delete time: a row may have committed since the snapshot above.
            # The referrers first, then the rows: a compression worker records its new key
            # (a referrer) before it writes the blob and keeps it recorded until after the
            # row points at it, so one of the two checks sees every live blob in this order.
            if (
                repair
                and aged
                and not referenced_elsewhere(key)
                and not Instance.objects.filter(blob_key=key).exists()
            ):
                store.delete(key)
                report["deleted"].append(key)
            continue
        try:
            data = store.get(key)
        except BlobNotFound:
            continue
        try:
            blob_verify(key, data)
        except BlobCorrupt:
            report["corrupt"].append({"blob_key": key, "sop_instance_uids": referenced[key]})
    for key, uids in referenced.items():
        if key not in seen and not store.exists(key):
            report["missing"].extend({"blob_key": key, "sop_instance_uid": uid} for uid in uids)
    if repair and hasattr(store, "clean_temporary"):
        report["temporary_files_removed"] = store.clean_temporary(min_age_s)
    return report
