"""Analysis settings, each read in one place with its default (see ``docs/analysis.md``).

The defaults agree with ``medvault.web.settings``; a deployment sets the ``MEDVAULT_*``
environment variables there.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

DEFAULT_BACKEND = "medvault.analysis.backends.OnnxBackend"


def models_dir() -> Path:
    """Where the shipped ONNX models and their cards are: ``models/`` in the checkout."""
    configured = getattr(settings, "MEDVAULT_MODELS_DIR", None)
    return Path(configured) if configured else (Path(settings.BASE_DIR) / "models").resolve()


def auto_analyse() -> bool:
    """Queue every model that applies to an image when it is stored."""
    return bool(getattr(settings, "MEDVAULT_AUTO_ANALYSE", True))


def results_as_dicom() -> bool:
    """Store each finished analysis in its study as DICOM (SR + heat-map capture)."""
    return bool(getattr(settings, "MEDVAULT_ANALYSIS_DICOM", True))


def backend_path() -> str:
    """Dotted path of the class that runs a model for the worker (tests inject fakes)."""
    return str(getattr(settings, "MEDVAULT_ANALYSIS_BACKEND", "") or DEFAULT_BACKEND)


def worker_poll_seconds() -> float:
    """How long an idle worker waits before it looks at the queues again."""
    return max(0.01, int(getattr(settings, "MEDVAULT_WORKER_POLL_MS", 100)) / 1000.0)
