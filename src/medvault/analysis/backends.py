"""What runs a model on a dataset for the worker.

``OnnxBackend`` (the default) calls ``medvault.core.ml``; loaded models are cached for the
life of the process, so a worker pays the load once. The setting
``MEDVAULT_ANALYSIS_BACKEND`` names another class with the same ``analyse`` method; the test
suite uses it to inject slow or failing fakes into worker processes.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

# The models MedVault knows how to run; a model is *available* when its ONNX file exists.
KNOWN_MODELS: tuple[str, ...] = ("lung-ct", "brain-mri")


class ModelUnavailable(Exception):
    """The model's files are not installed (permanent for this job: no retry helps)."""


class AnalysisBackend(Protocol):
    def analyse(self, model_name: str, dataset: Any) -> Any:
        """Run ``model_name`` on a pydicom Dataset; return an ``AnalysisOutput``-like object
        (label, probabilities, refused, reason, heatmap, embedding, latency_ms,
        model_name, model_version, model_sha256, extra)."""
        ...


def models_dir() -> Path:
    return Path(settings.MEDVAULT_MODELS_DIR)


def model_names() -> tuple[str, ...]:
    """Every model name MedVault can serve (whether or not installed here)."""
    try:
        from medvault.core import ml

        names = getattr(ml, "MODEL_NAMES", None)
        if names:
            return tuple(str(name) for name in names)
    except ImportError:
        pass
    return KNOWN_MODELS


def model_available(name: str) -> bool:
    return name in model_names() and (models_dir() / f"{name}.onnx").is_file()


def models_available() -> list[str]:
    return [name for name in model_names() if model_available(name)]


def model_applies(name: str, modality: str, body_part: str) -> bool:
    """Whether ingest should queue ``name`` for an image of this modality and body part.

    Asks ``medvault.core.ml.model_applies``; until that exists, a conservative rule
    (CT of the chest/lung; MR of the brain/head).
    """
    try:
        from medvault.core.ml import model_applies as ml_model_applies
    except ImportError:
        ml_model_applies = None
    if ml_model_applies is not None:
        return bool(ml_model_applies(name, modality or "", body_part or ""))
    modality = (modality or "").upper()
    body_part = (body_part or "").upper()
    if name == "lung-ct":
        return modality == "CT" and body_part in {"CHEST", "LUNG", "THORAX"}
    if name == "brain-mri":
        return modality == "MR" and body_part in {"BRAIN", "HEAD"}
    return False


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
    path = getattr(settings, "MEDVAULT_ANALYSIS_BACKEND", "") or (
        "medvault.analysis.backends.OnnxBackend"
    )
    return _backend_for(path)
