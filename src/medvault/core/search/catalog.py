"""What is known about each key, held next to the index so that filters cost no query.

Filtering the archive by the user's studies, modality and label happens here, in numpy,
producing the sorted array of allowed keys that the index searches within.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medvault.core.search.base import KeyArray, as_keys


class _Vocabulary:
    """Strings to small integer codes (modalities, labels)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def encode(self, values: Iterable[str]) -> NDArray[np.int32]:
        out = [self._codes.setdefault(v, len(self._codes)) for v in values]
        return np.asarray(out, dtype=np.int32)

    def codes_of(self, values: Iterable[str]) -> NDArray[np.int32]:
        return np.asarray([self._codes[v] for v in values if v in self._codes], dtype=np.int32)

    def decode(self, codes: NDArray[np.int32]) -> list[str]:
        names = list(self._codes)  # insertion order == code order
        return [names[int(c)] for c in codes]


class KeyCatalog:
    """Per-key metadata columns (study id, modality, label), rows sorted by key."""

    def __init__(self) -> None:
        self.keys: KeyArray = np.empty(0, dtype=np.int64)
        self.studies: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._modality = np.empty(0, dtype=np.int32)
        self._label = np.empty(0, dtype=np.int32)
        self._modalities = _Vocabulary()
        self._labels = _Vocabulary()

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def add(
        self,
        keys: ArrayLike,
        studies: ArrayLike,
        modalities: Sequence[str],
        labels: Sequence[str],
    ) -> None:
        k = as_keys(keys)
        s = np.asarray(studies, dtype=np.int64).reshape(-1)
        if not (k.shape[0] == s.shape[0] == len(modalities) == len(labels)):
            raise ValueError("catalog columns differ in length")
        self.remove(k)
        keys_all = np.concatenate([self.keys, k])
        order = np.argsort(keys_all, kind="stable")
        self.keys = keys_all[order]
        self.studies = np.concatenate([self.studies, s])[order]
        self._modality = np.concatenate(
            [self._modality, self._modalities.encode(m.upper() for m in modalities)]
        )[order]
        self._label = np.concatenate([self._label, self._labels.encode(labels)])[order]

    def modality_values(self) -> list[str]:
        """The modality of each key, in key order (for saving the catalog)."""
        return self._modalities.decode(self._modality)

    def label_values(self) -> list[str]:
        return self._labels.decode(self._label)

    def remove(self, keys: ArrayLike) -> None:
        drop = np.isin(self.keys, as_keys(keys))
        if drop.any():
            keep = ~drop
            self.keys = self.keys[keep]
            self.studies = self.studies[keep]
            self._modality = self._modality[keep]
            self._label = self._label[keep]

    def select(
        self,
        *,
        studies: ArrayLike | None = None,
        modalities: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        exclude_studies: ArrayLike | None = None,
    ) -> KeyArray:
        """Sorted keys that pass every given filter (``None`` means no restriction).

        ``studies`` is the set of study ids the caller may see: pass it always when a user
        is involved, an empty array allows nothing.
        """
        mask = np.ones(self.keys.shape[0], dtype=bool)
        if studies is not None:
            mask &= np.isin(self.studies, np.asarray(studies, dtype=np.int64))
        if exclude_studies is not None:
            mask &= ~np.isin(self.studies, np.asarray(exclude_studies, dtype=np.int64))
        if modalities:
            mask &= np.isin(self._modality, self._modalities.codes_of(m.upper() for m in modalities))
        if labels:
            mask &= np.isin(self._label, self._labels.codes_of(labels))
        return self.keys[mask]
