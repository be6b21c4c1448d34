"""Fixtures for DICOMweb tests: users of two groups with API tokens, and ingested studies."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group


@dataclass
class ApiUser:
    user: Any
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Token {self.token}"}

    @property
    def basic(self) -> str:
        raw = f"{self.user.get_username()}:{self.token}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def api_user_make(username: str, role: str, group: Group | None) -> ApiUser:
    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create

    user = User.objects.create_user(
        username=username, password="Corr3ct-Horse-Battery", role=role, status="approved",
        full_name=username.title(), email=f"{username}@example.org",
        is_superuser=role == "administrator", is_staff=role == "administrator",
    )
    if group is not None:
        user.groups.add(group)
    _, key = token_create(user=user, name="test")
    return ApiUser(user, key)


@pytest.fixture
def groups(db: Any) -> tuple[Group, Group]:
    return Group.objects.create(name="radiology-a"), Group.objects.create(name="radiology-b")


@pytest.fixture
def clinician_a(groups: tuple[Group, Group]) -> ApiUser:
    return api_user_make("clin_a", "clinician", groups[0])


@pytest.fixture
def clinician_b(groups: tuple[Group, Group]) -> ApiUser:
    return api_user_make("clin_b", "clinician", groups[1])


@pytest.fixture
def researcher_a(groups: tuple[Group, Group]) -> ApiUser:
    return api_user_make("res_a", "researcher", groups[0])


@pytest.fixture
def no_analysis(settings: Any) -> None:
    settings.MEDVAULT_AUTO_ANALYSE = False
