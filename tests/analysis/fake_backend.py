"""Fake analysis backends for the tests (never shipped): no model files needed.

Worker subprocesses load them with ``MEDVAULT_ANALYSIS_BACKEND=fake_backend.FakeBackend`` and
``PYTHONPATH=tests/analysis``. Environment knobs, read on every call:

* ``MEDVAULT_FAKE_ANALYSIS_SECONDS``: sleep this long inside ``analyse`` (a slow model).
* ``MEDVAULT_FAKE_ANALYSIS_LOG``: append "<pid> <SOPInstanceUID>" per call (who ran what).
* ``MEDVAULT_FAKE_ANALYSIS_STARTED``: touch this file when an analysis starts.
* ``MEDVAULT_FAKE_ANALYSIS_GATE``: wait (after logging) until this file exists, so a test can
  hold several workers inside a job at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FakeOutput:
    label: str | None
    probabilities: dict[str, float]
    refused: bool
    reason: str
    heatmap: np.ndarray | None
    embedding: np.ndarray | None
    latency_ms: float
    model_name: str
    model_version: str
    model_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)


def fake_heatmap(rows: int, columns: int) -> np.ndarray:
    """A bright spot in the upper-left quarter, fading out."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows * 0.25, columns * 0.25
    heat = np.exp(-(((y - cy) / (rows * 0.15)) ** 2 + ((x - cx) / (columns * 0.15)) ** 2))
    return heat.astype(np.float32)


class FakeBackend:
    calls: list[tuple[str, str]] = []

    def analyse(self, model_name: str, dataset: Any) -> FakeOutput:
        started = time.perf_counter()
        uid = str(dataset.SOPInstanceUID)
        marker = os.environ.get("MEDVAULT_FAKE_ANALYSIS_STARTED")
        if marker:
            Path(marker).touch()
        log = os.environ.get("MEDVAULT_FAKE_ANALYSIS_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()} {uid}\n")
        gate = os.environ.get("MEDVAULT_FAKE_ANALYSIS_GATE")
        deadline = time.monotonic() + 300
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(os.environ.get("MEDVAULT_FAKE_ANALYSIS_SECONDS", "0") or 0))
        FakeBackend.calls.append((model_name, uid))
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        return FakeOutput(
            label="adenocarcinoma",
            probabilities={
                "adenocarcinoma": 0.7,
                "large_cell_carcinoma": 0.1,
                "squamous_cell_carcinoma": 0.1,
                "normal": 0.1,
            },
            refused=False,
            reason="",
            heatmap=fake_heatmap(rows, columns),
            embedding=np.full(8, 1 / np.sqrt(8), dtype=np.float32),
            latency_ms=(time.perf_counter() - started) * 1000.0,
            model_name=model_name,
            model_version="fake-1",
            model_sha256="0" * 64,
            extra={"tumour_detected": np.bool_(True)},
        )


class RefusingBackend(FakeBackend):
    def analyse(self, model_name: str, dataset: Any) -> FakeOutput:
        return FakeOutput(
            label=None,
            probabilities={},
            refused=True,
            reason="not a chest CT",
            heatmap=None,
            embedding=None,
            latency_ms=1.0,
            model_name=model_name,
            model_version="fake-1",
            model_sha256="0" * 64,
        )


class FailingBackend(FakeBackend):
    def analyse(self, model_name: str, dataset: Any) -> FakeOutput:
        raise RuntimeError("the fake model broke")
