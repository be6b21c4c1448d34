"""Retrieval settings, each with a default (see ``docs/retrieval.md``)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from medvault.core.search import HnswParams


def index_dir() -> Path:
    configured = getattr(settings, "MEDVAULT_INDEX_DIR", None)
    return Path(configured) if configured else Path(settings.DATA_DIR) / "index"


def embedding_dtype() -> str:
    return str(getattr(settings, "MEDVAULT_EMBEDDING_DTYPE", "f16"))


def hnsw_params() -> HnswParams:
    return HnswParams(
        connectivity=int(getattr(settings, "MEDVAULT_HNSW_CONNECTIVITY", HnswParams.connectivity)),
        expansion_add=int(getattr(settings, "MEDVAULT_HNSW_EXPANSION_ADD", HnswParams.expansion_add)),
        expansion_search=int(getattr(settings, "MEDVAULT_HNSW_EXPANSION_SEARCH", HnswParams.expansion_search)),
    )


def full_check_seconds() -> float:
    """How often a server compares its index with the database in full (count of rows)."""
    return float(getattr(settings, "MEDVAULT_INDEX_CHECK_SECONDS", 60))


def save_seconds() -> float:
    """Incremental updates are written to disk at most this often."""
    return float(getattr(settings, "MEDVAULT_INDEX_SAVE_SECONDS", 30))


def default_k() -> int:
    return 12


def max_k() -> int:
    return int(getattr(settings, "MEDVAULT_SIMILAR_MAX_K", 100))
