from __future__ import annotations

import pytest

from medvault.core.search import average_precision_at_k, precision_at_k, retrieval_metrics


def test_precision_at_k_counts_missing_matches_as_misses() -> None:
    assert precision_at_k([True, False, True], 1) == 1.0
    assert precision_at_k([True, False, True], 5) == pytest.approx(0.4)


def test_average_precision() -> None:
    # relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision_at_k([True, False, True, False], 10) == pytest.approx(5 / 6)
    # relevant only at rank 2: 1/2
    assert average_precision_at_k([False, True] + [False] * 8, 10) == pytest.approx(0.5)
    assert average_precision_at_k([True] * 10, 10) == 1.0
    assert average_precision_at_k([False] * 10, 10) == 0.0
    # ranks beyond k do not count
    assert average_precision_at_k([False] * 10 + [True], 10) == 0.0


def test_agrees_with_the_training_code_on_random_rankings() -> None:
    import numpy as np

    from medvault.training import evaluate

    rng = np.random.default_rng(3)
    q, a = rng.normal(size=(40, 8)), rng.normal(size=(200, 8))
    qy, ay = rng.integers(0, 3, 40), rng.integers(0, 3, 200)
    theirs = evaluate.retrieval_metrics(q, qy, a, ay)
    top = np.argsort(-(q @ a.T), axis=1, kind="stable")[:, :10]
    ours = retrieval_metrics([str(v) for v in qy], [[str(ay[j]) for j in row] for row in top])
    for key in ("precision@1", "precision@5", "precision@10", "map@10"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4)


def test_retrieval_metrics_keys_and_values() -> None:
    out = retrieval_metrics(
        ["a", "b"],
        [["a"] * 10, ["a"] * 5 + ["b"] * 5],
        [1.0, 3.0],
    )
    assert set(out) == {"precision@1", "precision@5", "precision@10", "map@10", "latency_ms_p50"}
    assert out["precision@1"] == 0.5
    assert out["precision@5"] == 0.5
    assert out["precision@10"] == 0.75
    assert out["latency_ms_p50"] == 2.0
