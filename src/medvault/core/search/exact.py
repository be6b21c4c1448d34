"""Exact inner-product search in numpy: the baseline and the test oracle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from medvault.core.search.base import (
    KeyArray,
    SearchResult,
    VectorArray,
    as_keys,
    as_vectors,
    exact_top_k,
)


class ExactIndex:
    """All vectors in one float32 matrix, rows sorted by key; every search scans them."""

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dimension must be positive")
        self._dim = dim
        self._keys: KeyArray = np.empty(0, dtype=np.int64)
        self._matrix: VectorArray = np.empty((0, dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    def add(self, keys: ArrayLike, vectors: ArrayLike) -> None:
        k = as_keys(keys)
        v = as_vectors(vectors, self._dim)
        if k.shape[0] != v.shape[0]:
            raise ValueError("keys and vectors differ in length")
        # Last occurrence wins, both within this call and over what is stored.
        _, last = np.unique(k[::-1], return_index=True)
        keep = k.shape[0] - 1 - last
        k, v = k[keep], v[keep]
        self.remove(k)
        keys_all = np.concatenate([self._keys, k])
        matrix_all = np.concatenate([self._matrix, v])
        order = np.argsort(keys_all, kind="stable")
        self._keys = keys_all[order]
        self._matrix = np.ascontiguousarray(matrix_all[order])

    def remove(self, keys: ArrayLike) -> None:
        drop = np.isin(self._keys, as_keys(keys))
        if drop.any():
            self._keys = self._keys[~drop]
            self._matrix = np.ascontiguousarray(self._matrix[~drop])

    def keys(self) -> KeyArray:
        return self._keys.copy()

    def get(self, keys: ArrayLike) -> VectorArray:
        k = as_keys(keys)
        pos = np.searchsorted(self._keys, k)
        pos = np.minimum(pos, max(len(self) - 1, 0))
        if len(self) == 0 or not np.array_equal(self._keys[pos], k):
            raise KeyError("some keys are not in the index")
        return self._matrix[pos].copy()

    def search(self, query: ArrayLike, k: int, *, allowed: KeyArray | None = None) -> SearchResult:
        q = as_vectors(query, self._dim)[0]
        if allowed is None:
            keys, scores = exact_top_k(q, self._keys, self._matrix, k)
            return SearchResult(keys, scores, "exact")
        mask = np.isin(self._keys, allowed)
        keys, scores = exact_top_k(q, self._keys[mask], self._matrix[mask], k)
        return SearchResult(keys, scores, "exact-subset")

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=self._keys, matrix=self._matrix)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ExactIndex:
        with np.load(path) as data:
            keys = data["keys"].astype(np.int64)
            matrix = data["matrix"].astype(np.float32)
        index = cls(int(matrix.shape[1]))
        index._keys, index._matrix = keys, np.ascontiguousarray(matrix)
        return index
