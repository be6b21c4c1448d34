"""What runs a model on a dataset for the worker.

``OnnxBackend`` (the default) calls ``medvault.core.ml``; loaded models are cached for the
life of the process, so a worker pays the load once. The setting
``MEDVAULT_ANALYSIS_BACKEND`` names another class with the same ``analyse`` method; the test
suite uses it to inject slow or failing fakes into worker processes.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Protocol

from django.utils.module_loading import import_string

from medvault.analysis.conf import backend_path, models_dir
from medvault.core.ml import MODEL_NAMES


class ModelUnavailable(Exception):
    """The model's files are not installed (permanent for this job: no retry helps)."""


class AnalysisBackend(Protocol):
    def analyse(self, model_name: str, dataset: Any) -> Any:
        """Run ``model_name`` on a pydicom Dataset; return an ``AnalysisOutput``-like object
        (label, probabilities, refused, reason, heatmap, embedding, latency_ms,
        model_name, model_version, model_sha256, extra)."""
        ...


def model_available(name: str) -> bool:
    """A model is *available* when MedVault knows it and its ONNX file is installed."""
    return name in MODEL_NAMES and (models_dir() / f"{name}.onnx").is_file()


def models_available() -> list[str]:
    return [name for name in MODEL_NAMES if model_available(name)]


class OnnxBackend:
    """Runs the shipped ONNX models through ``medvault.core.ml``."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def model(self, model_name: str) -> Any:
        with self._lock:
            if model_name not in self._models:
                if not model_available(model_name):
                    raise ModelUnavailable(
                        f"model {model_name!r} is not installed in {models_dir()}"
                    )
                from medvault.core.ml import load_model

                self._models[model_name] = load_model(model_name, models_dir())
            return self._models[model_name]

    def analyse(self, model_name: str, dataset: Any) -> Any:
        model = self.model(model_name)
        from medvault.core.ml import analyse

        return analyse(model, dataset)


@lru_cache(maxsize=4)
def _backend_for(path: str) -> AnalysisBackend:
    backend: AnalysisBackend = import_string(path)()
    return backend


def analysis_backend() -> AnalysisBackend:
    """The process-wide backend named by ``MEDVAULT_ANALYSIS_BACKEND``."""
    return _backend_for(backend_path())
