"""The shipped models, loaded once per test module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medvault.core.ml import load_model

MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped models folder (cards, ONNX files, call statistics)."""
    for f in MODELS.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    return tmp_path


@pytest.fixture(scope="module")
def lung():
    return load_model("lung-ct", MODELS)


@pytest.fixture(scope="module")
def brain():
    return load_model("brain-mri", MODELS)
