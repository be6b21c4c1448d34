from __future__ import annotations

import pytest

from medvault.core.search import average_precision_at_k, precision_at_k, retrieval_metrics


def test_precision_at_k_counts_missing_matches_as_misses() -> None:
    assert precision_at_k([True, False, True], 1) == 1.0
    assert precision_at_k([True, False, True], 5) == pytest.approx(0.4)


def test_average_precision() -> None:
    # relevant at ranks 1 and 3, 2 relevant items exist: (1/1 + 2/3) / 2
    assert average_precision_at_k([True, False, True, False], 10, 2) == pytest.approx(5 / 6)
    # perfect ranking
    assert average_precision_at_k([True] * 10, 10, 50) == 1.0
    assert average_precision_at_k([False] * 10, 10, 50) == 0.0
    assert average_precision_at_k([True], 10, 0) == 0.0


def test_retrieval_metrics_keys_and_values() -> None:
    out = retrieval_metrics(
        ["a", "b"],
        [["a"] * 10, ["a"] * 5 + ["b"] * 5],
        {"a": 20, "b": 20},
        [1.0, 3.0],
    )
    assert set(out) == {"precision@1", "precision@5", "precision@10", "map@10", "latency_ms_p50"}
    assert out["precision@1"] == 0.5
    assert out["precision@5"] == 0.5
    assert out["precision@10"] == 0.75
    assert out["latency_ms_p50"] == 2.0
