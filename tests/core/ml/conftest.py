"""The shipped models, loaded once per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvault.core.ml import load_model

MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture(scope="module")
def lung():
    return load_model("lung-ct", MODELS)


@pytest.fixture(scope="module")
def brain():
    return load_model("brain-mri", MODELS)
