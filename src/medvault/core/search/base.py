"""The vector-index interface shared by the exact and the HNSW implementation.

Keys are non-negative 64-bit integers chosen by the caller (MedVault uses the primary key
of the ``Embedding`` row). Vectors are L2-normalised, so the similarity score of a match is
the cosine similarity (= inner product), 1.0 for the query itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

KeyArray = NDArray[np.int64]
VectorArray = NDArray[np.float32]


@dataclass(frozen=True)
class SearchResult:
    """Matches of one query, best first."""

    keys: KeyArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    scores: NDArray[np.float32] = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    # How the result was found: "hnsw", "hnsw+filter", "exact", "exact-subset".
    method: str = "exact"

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def pairs(self) -> list[tuple[int, float]]:
        return [(int(k), float(s)) for k, s in zip(self.keys, self.scores, strict=True)]


@runtime_checkable
class VectorIndex(Protocol):
    """What every index implementation offers."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, keys: ArrayLike, vectors: ArrayLike) -> None:
        """Insert vectors under ``keys``; a key already present is replaced."""

    def remove(self, keys: ArrayLike) -> None:
        """Drop ``keys``; unknown keys are ignored."""

    def keys(self) -> KeyArray:
        """All keys, sorted ascending."""

    def get(self, keys: ArrayLike) -> VectorArray:
        """The stored vectors of ``keys`` (all present), as float32 rows."""

    def search(self, query: ArrayLike, k: int, *, allowed: KeyArray | None = None) -> SearchResult:
        """The ``k`` nearest keys to ``query``; only keys in ``allowed`` (sorted) when given."""

    def save(self, path: Path) -> None:
        """Write the index to ``path`` atomically (temporary name, then rename)."""


def as_keys(keys: ArrayLike) -> KeyArray:
    arr = np.asarray(keys, dtype=np.int64).reshape(-1)
    if arr.size and int(arr.min()) < 0:
        raise ValueError("index keys must be non-negative")
    return arr


def as_vectors(vectors: ArrayLike, dim: int) -> VectorArray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("vectors contain NaN or infinity")
    return np.ascontiguousarray(arr)


def l2_normalise(vectors: ArrayLike) -> VectorArray:
    """Rows scaled to unit length (zero rows stay zero)."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return np.asarray(arr / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def exact_top_k(
    query: VectorArray, keys: KeyArray, matrix: VectorArray, k: int
) -> tuple[KeyArray, NDArray[np.float32]]:
    """Brute-force inner-product top-k of one query over ``matrix`` (rows aligned with keys)."""
    if k <= 0 or keys.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    scores = matrix @ query.reshape(-1)
    k = min(k, scores.shape[0])
    if k < scores.shape[0]:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(scores.shape[0])
    # Ties broken by key so that results are deterministic.
    order = np.lexsort((keys[part], -scores[part]))
    chosen = part[order]
    return keys[chosen].astype(np.int64), scores[chosen].astype(np.float32)


# --- compact storage of one vector as bytes -------------------------------------------------

STORAGE_DTYPES = ("f16", "i8")


def vector_encode(vector: ArrayLike, dtype: str = "f16") -> bytes:
    """A unit vector as compact bytes: IEEE float16, or int8 scaled by 127."""
    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("vector contains NaN or infinity")
    if dtype == "f16":
        return arr.astype("<f2").tobytes()
    if dtype == "i8":
        quantised: bytes = np.clip(np.rint(arr * 127.0), -127, 127).astype(np.int8).tobytes()
        return quantised
    raise ValueError(f"unknown storage dtype {dtype!r}; use one of {STORAGE_DTYPES}")


def vector_decode(data: bytes, dim: int, dtype: str = "f16") -> VectorArray:
    """Inverse of :func:`vector_encode`, re-normalised to unit length."""
    if dtype == "f16":
        arr = np.frombuffer(data, dtype="<f2").astype(np.float32)
    elif dtype == "i8":
        arr = np.frombuffer(data, dtype=np.int8).astype(np.float32) / 127.0
    else:
        raise ValueError(f"unknown storage dtype {dtype!r}")
    if arr.shape[0] != dim:
        raise ValueError(f"stored vector has {arr.shape[0]} values, expected {dim}")
    return l2_normalise(arr)


def vectors_decode(blobs: list[bytes], dim: int, dtype: str = "f16") -> VectorArray:
    """Many stored vectors at once, as a (n, dim) float32 matrix of unit rows."""
    if not blobs:
        return np.empty((0, dim), dtype=np.float32)
    if dtype == "f16":
        flat = np.frombuffer(b"".join(blobs), dtype="<f2").astype(np.float32)
    elif dtype == "i8":
        flat = np.frombuffer(b"".join(blobs), dtype=np.int8).astype(np.float32) / 127.0
    else:
        raise ValueError(f"unknown storage dtype {dtype!r}")
    if flat.shape[0] != len(blobs) * dim:
        raise ValueError("stored vectors do not all have the expected dimension")
    return l2_normalise(flat.reshape(len(blobs), dim))
