"""``eval-retrieval``: retrieval quality of a model on labelled folders, in memory.

The "archive" folder is embedded into a temporary in-memory index (never the user's
archive or database); each image of the "queries" folder is searched in it, and a match is
relevant when its class (its folder name) equals the query's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvault.core.search import ExactIndex, HnswIndex, retrieval_metrics

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


@dataclass
class LabelledSet:
    labels: list[str]
    vectors: np.ndarray
    paths: list[str]
    refused: int
    unreadable: int
    embed_ms: list[float]


def labelled_files(root: Path) -> list[tuple[str, Path]]:
    """(class, file) for every file in ``root/<class>/``, sorted for reproducibility."""
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    out = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                out.append((class_dir.name, f))
    if not out:
        raise ValueError(f"{root} holds no <class>/<file> images")
    return out


def embed_folder(
    root: Path, model_name: str, analyse: Callable[[str, Any], Any],
    log: Callable[[str], None] = lambda s: None,
) -> LabelledSet:
    from medvault.retrieval.query import QueryError, read_query_file

    labels, vectors, paths, times = [], [], [], []
    refused = unreadable = 0
    files = labelled_files(root)
    for i, (label, path) in enumerate(files, start=1):
        try:
            image = read_query_file(path.read_bytes())
        except QueryError:
            unreadable += 1
            continue
        t0 = time.perf_counter()
        output = analyse(model_name, image)
        times.append((time.perf_counter() - t0) * 1000)
        if output.refused or output.embedding is None:
            refused += 1
            continue
        labels.append(label)
        vectors.append(np.asarray(output.embedding, dtype=np.float32).reshape(-1))
        paths.append(str(path))
        if i % 200 == 0:
            log(f"{root.name}: {i}/{len(files)} embedded")
    matrix = np.vstack(vectors) if vectors else np.empty((0, 0), dtype=np.float32)
    if matrix.size:
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return LabelledSet(labels, matrix, paths, refused, unreadable, times)


def evaluate(
    archive: LabelledSet, queries: LabelledSet, *, k: int = 10, index_kind: str = "hnsw"
) -> dict[str, Any]:
    if not archive.labels or not queries.labels:
        raise ValueError("nothing left to evaluate: every image was refused or unreadable")
    dim = archive.vectors.shape[1]
    index: HnswIndex | ExactIndex = HnswIndex(dim) if index_kind == "hnsw" else ExactIndex(dim)
    index.add(np.arange(len(archive.labels)), archive.vectors)
    match_labels, latencies = [], []
    for q in queries.vectors:
        t0 = time.perf_counter()
        found = index.search(q, k)
        latencies.append((time.perf_counter() - t0) * 1000)
        match_labels.append([archive.labels[int(key)] for key in found.keys])
    out: dict[str, Any] = retrieval_metrics(queries.labels, match_labels, latencies)
    out.update({
        "index": index_kind,
        "archive_images": len(archive.labels),
        "query_images": len(queries.labels),
        "refused_archive": archive.refused,
        "refused_queries": queries.refused,
        "unreadable": archive.unreadable + queries.unreadable,
        "embed_ms_p50": round(float(np.percentile(archive.embed_ms + queries.embed_ms, 50)), 3),
        "per_class_precision@10": {
            label: round(float(np.mean([
                sum(m == label for m in matches[:k]) / k
                for lab, matches in zip(queries.labels, match_labels, strict=True) if lab == label
            ])), 4)
            for label in sorted(set(queries.labels))
        },
    })
    return out
