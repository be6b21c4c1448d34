"""Approximate search with an HNSW graph (usearch), with filtering by an allowed key set.

Filtering works by over-fetching: ask the graph for more neighbours than needed and keep
the allowed ones. When the allowed set is a small part of the index, the graph would have
to be walked very far to find k allowed neighbours, so the search switches to an exact
scan of the allowed vectors instead (cheap precisely because the subset is small).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

try:
    # Load order matters: once usearch's numkong extension (with its bundled libgomp) is
    # loaded, creating an ONNX Runtime session segfaults (usearch 2.26.6, numkong 7.8.6,
    # onnxruntime 1.32). Loading onnxruntime first avoids it; the analysis models need it.
    import onnxruntime  # noqa: F401
except ImportError:  # pragma: no cover - search works without onnxruntime
    pass
from usearch.index import Index  # noqa: E402

from medvault.core.search.base import (
    KeyArray,
    SearchResult,
    VectorArray,
    as_keys,
    as_vectors,
    exact_top_k,
)


@dataclass(frozen=True)
class HnswParams:
    """Graph and search parameters (see docs/benchmarks.md for how they were chosen)."""

    connectivity: int = 32
    expansion_add: int = 256
    expansion_search: int = 256
    # Storage precision of the vectors inside the graph: "f16", "f32" or "i8".
    dtype: str = "f16"
    # Allowed sets at most this large, or at most this fraction of the index, are scanned
    # exactly instead of walking the graph; so is a whole index of at most exact_max_keys
    # vectors (about a millisecond at 128 dimensions, and exact: on small graphs HNSW still
    # missed a true top-10 neighbour in about 1 query in 40).
    exact_max_keys: int = 4096
    exact_max_fraction: float = 0.01
    # First over-fetch = k / selectivity * overfetch; grows 4x per round up to max_fetch.
    overfetch: float = 2.0
    max_fetch: int = 4096
    # Threads for one query (1 keeps latency predictable under concurrent requests).
    search_threads: int = 1


class HnswIndex:
    """usearch HNSW over unit vectors with inner-product similarity."""

    def __init__(self, dim: int, params: HnswParams | None = None) -> None:
        if dim <= 0:
            raise ValueError("dimension must be positive")
        self._dim = dim
        self.params = params or HnswParams()
        self._index = Index(
            ndim=dim,
            metric="ip",
            dtype=self.params.dtype,
            connectivity=self.params.connectivity,
            expansion_add=self.params.expansion_add,
            expansion_search=self.params.expansion_search,
        )
        self._reset_mirror()
        self._removed = 0

    def _reset_mirror(self) -> None:
        # A float16 copy of the vectors for exact scans of small allowed sets: reading rows
        # back out of the graph one by one costs about 5 us per key. Rows are appended into
        # a growing buffer; ``_keys`` (sorted) maps to buffer rows through ``_slots``.
        self._keys: KeyArray = np.empty(0, dtype=np.int64)
        self._slots: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._mirror: NDArray[np.float16] = np.empty((0, self._dim), dtype=np.float16)
        self._used = 0

    def _mirror_append(self, keys: KeyArray, vectors: VectorArray) -> None:
        need = self._used + keys.shape[0]
        if need > self._mirror.shape[0]:
            grown = np.empty((max(need, 2 * self._mirror.shape[0], 1024), self._dim), dtype=np.float16)
            grown[: self._used] = self._mirror[: self._used]
            self._mirror = grown
        self._mirror[self._used:need] = vectors
        slots = np.arange(self._used, need, dtype=np.int64)
        self._used = need
        order = np.argsort(keys, kind="stable")
        keys, slots = keys[order], slots[order]
        pos = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, pos, keys)
        self._slots = np.insert(self._slots, pos, slots)

    # --- protocol ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    @property
    def removed_count(self) -> int:
        """Removals since the index was built; their slots stay in the graph until a rebuild."""
        return self._removed

    def add(self, keys: ArrayLike, vectors: ArrayLike, *, threads: int = 0) -> None:
        k = as_keys(keys)
        v = as_vectors(vectors, self._dim)
        if k.shape[0] != v.shape[0]:
            raise ValueError("keys and vectors differ in length")
        if k.shape[0] == 0:
            return
        _, last = np.unique(k[::-1], return_index=True)
        keep = np.sort(k.shape[0] - 1 - last)
        k, v = k[keep], v[keep]
        self.remove(k)
        self._index.add(k.astype(np.uint64), v, threads=threads)
        self._mirror_append(k, v)

    def remove(self, keys: ArrayLike) -> None:
        k = as_keys(keys)
        present = k[np.isin(k, self._keys)]
        if present.shape[0] == 0:
            return
        self._index.remove(present.astype(np.uint64))
        self._removed += int(present.shape[0])
        keep = ~np.isin(self._keys, present)
        self._keys, self._slots = self._keys[keep], self._slots[keep]

    def keys(self) -> KeyArray:
        return self._keys.copy()

    def get(self, keys: ArrayLike) -> VectorArray:
        k = as_keys(keys)
        if k.shape[0] == 0:
            return np.empty((0, self._dim), dtype=np.float32)
        if not _sorted_contains(self._keys, k).all():
            raise KeyError("some keys are not in the index")
        return self._mirror[self._slots[np.searchsorted(self._keys, k)]].astype(np.float32)

    def search(self, query: ArrayLike, k: int, *, allowed: KeyArray | None = None) -> SearchResult:
        q = as_vectors(query, self._dim)[0]
        n = len(self)
        if k <= 0 or n == 0:
            return SearchResult(method="hnsw")
        if allowed is None:
            if n <= self.params.exact_max_keys:
                return self._exact_subset(q, k, self._keys, method="exact")
            return self._graph_search(q, min(k, n), "hnsw")
        allowed = np.asarray(allowed, dtype=np.int64)
        n_allowed = int(allowed.shape[0])
        if n_allowed == 0:
            return SearchResult(method="hnsw+filter")
        p = self.params
        if n_allowed <= p.exact_max_keys or n_allowed <= p.exact_max_fraction * n:
            return self._exact_subset(q, k, allowed)
        fetch = min(n, max(k, math.ceil(k * n / n_allowed * p.overfetch)))
        while True:
            found = self._graph_search(q, fetch, "hnsw+filter")
            keep = _sorted_contains(allowed, found.keys)
            if int(keep.sum()) >= k or fetch >= n:
                return SearchResult(found.keys[keep][:k], found.scores[keep][:k], "hnsw+filter")
            if fetch >= p.max_fetch:
                # Too many misses: the allowed keys are far from the query in the graph.
                return self._exact_subset(q, k, allowed)
            fetch = min(n, p.max_fetch, fetch * 4)

    def save(self, path: Path) -> None:
        """Write the graph to ``path`` and the float16 vector copy beside it (``.f16.npz``)."""
        sidecar = _sidecar(path)
        tmp_side = sidecar.with_name(sidecar.name + f".tmp{os.getpid()}")
        with open(tmp_side, "wb") as fh:
            np.savez(fh, keys=self._keys, vectors=self._mirror[self._slots])
            fh.flush()
            os.fsync(fh.fileno())
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        self._index.save(str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_side, sidecar)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, params: HnswParams | None = None) -> HnswIndex:
        """Read a saved index; raises ``ValueError`` when the file is not a usearch index."""
        meta = Index.metadata(str(path))
        if not meta:
            raise ValueError(f"{path} is not a usearch index")
        loaded = Index.restore(str(path))
        if loaded is None:
            raise ValueError(f"{path} is not a usearch index")
        index = cls.__new__(cls)
        index._dim = int(loaded.ndim)
        index.params = params or HnswParams()
        # usearch defines the property's setter apart from its getter, which mypy does not see.
        loaded.expansion_search = index.params.expansion_search  # type: ignore[misc]
        index._index = loaded
        index._reset_mirror()
        keys = np.sort(np.asarray(loaded.keys, dtype=np.int64))
        vectors = None
        try:
            with np.load(_sidecar(path)) as side:
                if np.array_equal(side["keys"], keys) and side["vectors"].shape == (keys.shape[0], index._dim):
                    vectors = side["vectors"]
        except (OSError, ValueError, KeyError):
            vectors = None
        if vectors is None and keys.shape[0]:  # no usable copy: read the rows from the graph
            rows = loaded.get(keys.astype(np.uint64), dtype="f32")
            vectors = np.asarray(rows, dtype=np.float32).reshape(keys.shape[0], index._dim)
        if keys.shape[0]:
            index._mirror_append(keys, np.asarray(vectors))
        index._removed = 0
        return index

    # --- internals --------------------------------------------------------------------
    def _graph_search(self, q: VectorArray, count: int, method: str) -> SearchResult:
        ef = self._index.expansion_search
        if count > ef:
            self._index.expansion_search = count  # type: ignore[misc]  # usearch: setter apart from getter
        try:
            m = self._index.search(q, count, threads=self.params.search_threads)
        finally:
            self._index.expansion_search = ef  # type: ignore[misc]  # usearch: setter apart from getter
        keys = np.asarray(m.keys, dtype=np.int64)
        scores = (1.0 - np.asarray(m.distances, dtype=np.float32)).astype(np.float32)
        return SearchResult(keys, scores, method)

    def _exact_subset(self, q: VectorArray, k: int, allowed: KeyArray,
                      method: str = "exact-subset") -> SearchResult:
        present = allowed[_sorted_contains(self._keys, allowed)]
        keys, scores = exact_top_k(q, present, self.get(present), k)
        return SearchResult(keys, scores, method)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".f16.npz")


def _sorted_contains(sorted_keys: KeyArray, probe: KeyArray) -> np.ndarray:
    """Boolean mask: which of ``probe`` occur in the ascending array ``sorted_keys``."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(probe.shape[0], dtype=bool)
    pos = np.searchsorted(sorted_keys, probe)
    pos = np.minimum(pos, sorted_keys.shape[0] - 1)
    return np.asarray(sorted_keys[pos] == probe)
