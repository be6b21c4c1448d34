"""Fixtures for the web-page tests: the accounts fixtures plus real stored images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "accounts"))

from mvfixtures import *  # noqa: E402,F401,F403
from mvfixtures import sample_bytes  # noqa: E402,F401


def png_bytes(size: int = 64) -> bytes:
    """A synthetic 8-bit grey PNG (a gradient with a bright disc)."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    image = (x * 200 // size).astype(np.uint8)
    image[(x - size // 2) ** 2 + (y - size // 2) ** 2 < (size // 5) ** 2] = 250
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def stored_ct(blob_dir, group_a, clinician_a):
    """CT_small.dcm stored in group A by clinician A; returns the Instance."""
    from medvault.archive.services import upload_store

    [result] = upload_store(name="CT_small.dcm", data=sample_bytes(), source="test", user=clinician_a, group=group_a)
    assert result.status == "stored", result.reason
    return result.instance
