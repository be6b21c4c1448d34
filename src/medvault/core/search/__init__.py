"""Vector search without Django: an index interface, exact and HNSW implementations,
per-key metadata for filters, and retrieval metrics."""

from medvault.core.search.base import (
    SearchResult,
    VectorIndex,
    exact_top_k,
    l2_normalise,
    vector_decode,
    vector_encode,
    vectors_decode,
)
from medvault.core.search.catalog import KeyCatalog
from medvault.core.search.exact import ExactIndex
from medvault.core.search.hnsw import HnswIndex, HnswParams
from medvault.core.search.metrics import average_precision_at_k, precision_at_k, retrieval_metrics

__all__ = [
    "ExactIndex",
    "HnswIndex",
    "HnswParams",
    "KeyCatalog",
    "SearchResult",
    "VectorIndex",
    "average_precision_at_k",
    "exact_top_k",
    "l2_normalise",
    "precision_at_k",
    "retrieval_metrics",
    "vector_decode",
    "vector_encode",
    "vectors_decode",
]
