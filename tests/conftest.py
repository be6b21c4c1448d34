"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/data beside the checkout: real images, never committed. Read-only in CI.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture
def blob_dir(settings, tmp_path: Path) -> Path:
    """Point the blob store at an empty temporary directory for one test."""
    path = tmp_path / "blobs"
    settings.MEDVAULT_BLOB_DIR = path
    return path


@pytest.fixture(autouse=True)
def compression_inline(settings) -> None:
    """Compress inside ingest, as most tests check what is stored at once.

    The default (deferred: the worker compresses later) is tested in
    tests/archive/test_compression.py, which turns it back on.
    """
    settings.MEDVAULT_COMPRESSION_DEFERRED = False
