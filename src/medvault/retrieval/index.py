"""The per-process index of each (model, version): built from the database, kept on disk.

Every app server (and every gunicorn worker process) holds its own copy. On first use it
loads the saved index from ``MEDVAULT_INDEX_DIR`` if that matches the database, else it
rebuilds from the ``Embedding`` rows. Before each search it asks the database for the
highest embedding id (one index-only query) and adds newer rows incrementally; every
``MEDVAULT_INDEX_CHECK_SECONDS`` it also compares the row count and reconciles deletions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import connection
from django.db.models import Count, Max, QuerySet

from medvault.core.search import HnswIndex, KeyCatalog, SearchResult, vectors_decode
from medvault.retrieval import conf
from medvault.retrieval.models import Embedding

log = logging.getLogger(__name__)

_CHUNK = 20_000
# Rebuild instead of patching when removals left this share of dead slots in the graph.
_REBUILD_REMOVED_FRACTION = 0.2


@dataclass(frozen=True)
class IndexStatus:
    model_name: str
    model_version: str
    size: int
    dim: int
    max_id: int
    source: str  # "disk", "built", "empty"


def _rows(model_name: str, model_version: str, *, after_id: int = 0, ids: Sequence[int] | None = None):  # type: ignore[no-untyped-def]
    qs = Embedding.objects.filter(model_name=model_name, model_version=model_version)
    if ids is not None:
        qs = qs.filter(id__in=list(ids))
    else:
        qs = qs.filter(id__gt=after_id)
    return qs.order_by("id").values_list(
        "id", "dim", "dtype", "vector", "label", "instance__series__study_id",
        "instance__series__modality",
    )


class ManagedIndex:
    """HNSW graph + key catalog for one (model, version), synchronised with the database."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.index: HnswIndex | None = None
        self.catalog = KeyCatalog()
        self.max_id = 0
        self.source = "empty"
        self._lock = threading.RLock()
        self._last_full_check = 0.0
        self._last_save = 0.0
        self._dirty = False

    # --- files ----------------------------------------------------------------------------
    def _stem(self) -> Path:
        # File names come from a hash, never from model names or versions as given.
        db = connection.settings_dict
        ident = f"{db.get('ENGINE')}\0{db.get('NAME')}\0{db.get('HOST')}\0{self.model_name}\0{self.model_version}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
        return conf.index_dir() / f"emb-{digest}"

    def save(self) -> None:
        with self._lock:
            if self.index is None:
                return
            stem = self._stem()
            stem.parent.mkdir(parents=True, exist_ok=True)
            self.index.save(stem.with_suffix(".usearch"))
            tmp = stem.with_name(stem.name + f".npz.tmp{os.getpid()}")
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    keys=self.catalog.keys,
                    studies=self.catalog.studies,
                    modalities=np.asarray(self.catalog.modality_values(), dtype=str),
                    labels=np.asarray(self.catalog.label_values(), dtype=str),
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, stem.with_suffix(".npz"))
            meta = {"model_name": self.model_name, "model_version": self.model_version,
                    "max_id": self.max_id, "size": len(self.index), "dim": self.index.dim}
            tmp_meta = stem.with_name(stem.name + f".json.tmp{os.getpid()}")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, stem.with_suffix(".json"))
            self._last_save = time.monotonic()
            self._dirty = False

    def _load(self) -> bool:
        stem = self._stem()
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            if meta.get("model_name") != self.model_name or meta.get("model_version") != self.model_version:
                return False
            index = HnswIndex.load(stem.with_suffix(".usearch"), conf.hnsw_params())
            with np.load(stem.with_suffix(".npz")) as data:
                keys = data["keys"].astype(np.int64)
                catalog = KeyCatalog()
                catalog.add(keys, data["studies"], [str(m) for m in data["modalities"]],
                            [str(lab) for lab in data["labels"]])
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError):
            return False
        if not np.array_equal(index.keys(), catalog.keys):
            return False
        db_max = self._db_max_id()
        if db_max < int(meta.get("max_id", 0)):
            return False  # the database lost rows the file knows: stale, rebuild
        self.index, self.catalog = index, catalog
        self.max_id = int(meta.get("max_id", 0))
        self.source = "disk"
        return True

    # --- database -------------------------------------------------------------------------
    def _qs(self) -> QuerySet[Embedding]:
        return Embedding.objects.filter(model_name=self.model_name, model_version=self.model_version)

    def _db_max_id(self) -> int:
        return int(self._qs().aggregate(m=Max("id"))["m"] or 0)

    def _add_rows(self, rows) -> int:  # type: ignore[no-untyped-def]
        added = 0
        batch: list[tuple] = []  # type: ignore[type-arg]

        def flush() -> None:
            nonlocal added
            if not batch:
                return
            dim, dtype = batch[0][1], batch[0][2]
            good = [r for r in batch if r[1] == dim and r[2] == dtype]
            keys = np.asarray([r[0] for r in good], dtype=np.int64)
            vectors = vectors_decode([bytes(r[3]) for r in good], dim, dtype)
            if self.index is None:
                self.index = HnswIndex(dim, conf.hnsw_params())
            if dim != self.index.dim:
                log.warning("skipping %d embeddings of dimension %d (index has %d)",
                            len(good), dim, self.index.dim)
            else:
                self.index.add(keys, vectors)
                self.catalog.add(keys, [r[5] for r in good], [r[6] or "" for r in good],
                                 [r[4] or "" for r in good])
                added += len(good)
            self.max_id = max(self.max_id, max(r[0] for r in batch))
            # rows of another dim/dtype in this batch go round again on their own
            rest = [r for r in batch if not (r[1] == dim and r[2] == dtype)]
            batch.clear()
            if rest:
                batch.extend(rest)
                flush()

        for row in rows.iterator(chunk_size=_CHUNK):
            batch.append(row)
            if len(batch) >= _CHUNK:
                flush()
        flush()
        return added

    def rebuild(self) -> None:
        with self._lock:
            self.index, self.catalog, self.max_id = None, KeyCatalog(), 0
            self._add_rows(_rows(self.model_name, self.model_version))
            self.source = "built" if self.index is not None else "empty"
            self._last_full_check = time.monotonic()
            self.save()

    def _reconcile(self) -> None:
        """Bring the key set in line with the database (deleted or replaced rows)."""
        db_ids = np.fromiter(self._qs().values_list("id", flat=True).iterator(chunk_size=_CHUNK),
                             dtype=np.int64)
        db_ids.sort()
        have = self.catalog.keys
        gone = have[~np.isin(have, db_ids)]
        missing = db_ids[~np.isin(db_ids, have)]
        if self.index is not None and gone.size:
            if (self.index.removed_count + gone.size) > _REBUILD_REMOVED_FRACTION * max(len(self.index), 1):
                self.rebuild()
                return
            self.index.remove(gone)
            self.catalog.remove(gone)
            self._dirty = True
        if missing.size > _CHUNK:
            self.rebuild()  # many rows appeared below max_id (e.g. a restore): start over
            return
        if missing.size:
            self._add_rows(_rows(self.model_name, self.model_version, ids=missing.tolist()))
            self._dirty = True

    def sync(self, *, force_full: bool = False) -> None:
        """Make the index reflect the database (cheap when nothing changed)."""
        with self._lock:
            if self.source == "empty" and self.index is None and self.max_id == 0:
                if not self._load():
                    self.rebuild()
                    return
            db_max = self._db_max_id()
            if db_max < self.max_id:
                # Rows this index knows are gone (restored backup, emptied table): start over.
                self.rebuild()
                return
            if db_max > self.max_id:
                if self._add_rows(_rows(self.model_name, self.model_version, after_id=self.max_id)):
                    self._dirty = True
                force_full = True  # a new row may replace an old one: check the count now
            now = time.monotonic()
            if force_full or now - self._last_full_check >= conf.full_check_seconds():
                count = int(self._qs().aggregate(n=Count("id"))["n"])
                if count != len(self.catalog):
                    self._reconcile()
                self._last_full_check = now
            if self._dirty and now - self._last_save >= conf.save_seconds():
                self.save()

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        studies: Sequence[int] | np.ndarray | None,
        modalities: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        exclude_studies: Sequence[int] | None = None,
    ) -> SearchResult:
        self.sync()
        with self._lock:
            if self.index is None or len(self.index) == 0:
                return SearchResult(method="empty")
            if query.shape[-1] != self.index.dim:
                raise ValueError(
                    f"query has dimension {query.shape[-1]}, the {self.model_name} index {self.index.dim}"
                )
            unfiltered = studies is None and not modalities and not labels and not exclude_studies
            allowed = None if unfiltered else self.catalog.select(
                studies=studies, modalities=modalities, labels=labels,
                exclude_studies=exclude_studies,
            )
            return self.index.search(query, k, allowed=allowed)

    def status(self) -> IndexStatus:
        return IndexStatus(self.model_name, self.model_version,
                           len(self.index) if self.index is not None else 0,
                           self.index.dim if self.index is not None else 0,
                           self.max_id, self.source)


_registry: dict[tuple[str, str, str], ManagedIndex] = {}
_registry_lock = threading.Lock()


def managed_index(model_name: str, model_version: str) -> ManagedIndex:
    """The process-wide index of this model version (created on first use)."""
    key = (str(conf.index_dir()), model_name, model_version)
    with _registry_lock:
        if key not in _registry:
            _registry[key] = ManagedIndex(model_name, model_version)
        return _registry[key]


def reset_registry() -> None:
    """Forget every in-memory index (tests; after a database swap)."""
    with _registry_lock:
        _registry.clear()
