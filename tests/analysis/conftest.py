"""Fixtures for the analysis tests: groups, users with tokens, stored instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import helpers


@pytest.fixture
def ct_dicom(shared_data: Path) -> bytes:
    return helpers.dicom_bytes(helpers.CT_SMALL, body_part="CHEST")


@pytest.fixture
def group_a(db: Any) -> Any:
    from django.contrib.auth.models import Group

    return Group.objects.create(name="radiology-a")


@pytest.fixture
def group_b(db: Any) -> Any:
    from django.contrib.auth.models import Group

    return Group.objects.create(name="radiology-b")


def _user(username: str, role: str, groups: list[Any]) -> Any:
    from medvault.accounts.models import User

    user = User.objects.create_user(
        username=username, password="not-used-here-1234", role=role, status="approved"
    )
    for group in groups:
        user.groups.add(group)
    return user


@pytest.fixture
def clinician(group_a: Any) -> Any:
    return _user("dr-a", "clinician", [group_a])


@pytest.fixture
def other_clinician(group_b: Any) -> Any:
    return _user("dr-b", "clinician", [group_b])


@pytest.fixture
def researcher(group_a: Any) -> Any:
    return _user("res-a", "researcher", [group_a])


@pytest.fixture
def technician(group_a: Any) -> Any:
    return _user("tech-a", "technician", [group_a])


@pytest.fixture
def ct_instance(
    blob_dir: Path, ct_dicom: bytes, group_a: Any, clinician: Any, settings: Any
) -> Any:
    settings.MEDVAULT_AUTO_ANALYSE = False
    return helpers.store(ct_dicom, group=group_a, user=clinician)


def token_for(user: Any) -> str:
    from medvault.accounts.tokens import token_create

    return token_create(user=user, name="test")[1]


@pytest.fixture
def auth_header() -> Any:
    def header(user: Any) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Token {token_for(user)}"}

    return header


@pytest.fixture
def models_dir(tmp_path: Path, settings: Any) -> Path:
    """A models directory where both models look installed (files exist; fakes run them)."""
    path = tmp_path / "models"
    path.mkdir()
    for name in ("lung-ct", "brain-mri"):
        (path / f"{name}.onnx").write_bytes(b"placeholder: the fake backend never reads it")
    settings.MEDVAULT_MODELS_DIR = path
    return path
