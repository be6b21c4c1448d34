"""Latency summaries shared by the benchmarks: p50, p95, max and count of a list of timings."""

from __future__ import annotations

import statistics


def summary(values: list[float]) -> dict[str, float]:
    """p50 (median), p95 (nearest rank), max and n of ``values``, rounded to 0.1."""
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
        "max": round(ordered[-1], 1),
        "n": len(ordered),
    }
