"""Per-request group lookups: read once per user object, never stale after a change."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from medvault.accounts.models import User
from medvault.archive.access import visible_to

pytestmark = pytest.mark.django_db


def _user() -> User:
    return User.objects.create_user(
        username="cache-u", password="x-Unused-Passw0rd", role="clinician", status="approved"
    )


def test_group_ids_are_read_once_per_user_object() -> None:
    user = _user()
    user.groups.add(Group.objects.create(name="g1"))
    list(visible_to(user))
    with CaptureQueriesContext(connection) as ctx:
        list(visible_to(user))
    assert not [q for q in ctx.captured_queries if "auth_group" in q["sql"]]


def test_a_group_change_on_the_same_object_is_seen() -> None:
    from medvault.archive.models import Patient, Study

    user = _user()
    g1, g2 = Group.objects.create(name="g1"), Group.objects.create(name="g2")
    patient = Patient.objects.create(patient_id="P")
    study = Study.objects.create(study_instance_uid="1.2.3", patient=patient, group=g2)
    user.groups.add(g1)
    assert study not in visible_to(user)
    user.groups.add(g2)
    assert study in visible_to(user)
    user.groups.remove(g2)
    assert study not in visible_to(user)
