"""Fixtures for the web-page tests: the accounts fixtures plus real stored images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "accounts"))

from mvfixtures import *  # noqa: E402,F401,F403
from mvfixtures import sample_bytes  # noqa: E402,F401


@pytest.fixture
def stored_ct(blob_dir, group_a, clinician_a):
    """CT_small.dcm stored in group A by clinician A; returns the Instance."""
    from medvault.archive.uploads import upload_store

    [result] = upload_store(name="CT_small.dcm", data=sample_bytes(), source="test", user=clinician_a, group=group_a)
    assert result.status == "stored", result.reason
    return result.instance
