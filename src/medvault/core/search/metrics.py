"""Retrieval quality: precision@k and mean average precision@k over labelled queries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Share of the first ``k`` matches that are relevant (missing matches count as misses)."""
    return float(sum(bool(r) for r in list(relevant)[:k])) / k


def average_precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """AP@k: the mean of precision@i over the ranks i <= k that hold a relevant match
    (0 when none of the first k is relevant).

    The denominator is the number of relevant matches among the first k, as in the model
    cards (``medvault.training.evaluate.retrieval_metrics``), so both report the same mAP@10.
    """
    hits, total = 0, 0.0
    for i, rel in enumerate(list(relevant)[:k], start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def retrieval_metrics(
    query_labels: Sequence[str],
    match_labels: Sequence[Sequence[str]],
    latencies_ms: Sequence[float] = (),
) -> dict[str, float]:
    """The figures ``medvault eval-retrieval`` prints.

    Parameters
    ----------
    query_labels
        The class of each query.
    match_labels
        For each query, the classes of its matches, best first (at least 10 when the
        archive holds 10 items).
    latencies_ms
        Search time of each query.
    """
    if len(query_labels) != len(match_labels):
        raise ValueError("one list of matches per query is needed")
    if not query_labels:
        raise ValueError("no queries")
    p1, p5, p10, ap10 = [], [], [], []
    for label, matches in zip(query_labels, match_labels, strict=True):
        rel = [m == label for m in matches]
        p1.append(precision_at_k(rel, 1))
        p5.append(precision_at_k(rel, 5))
        p10.append(precision_at_k(rel, 10))
        ap10.append(average_precision_at_k(rel, 10))
    out = {
        "precision@1": float(np.mean(p1)),
        "precision@5": float(np.mean(p5)),
        "precision@10": float(np.mean(p10)),
        "map@10": float(np.mean(ap10)),
        "latency_ms_p50": float(np.percentile(latencies_ms, 50)) if len(latencies_ms) else 0.0,
    }
    return {key: round(value, 4) for key, value in out.items()}
