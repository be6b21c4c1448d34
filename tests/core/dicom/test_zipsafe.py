"""ZIP uploads: path tricks and bombs are refused before anything is expanded."""

from __future__ import annotations

import io
import zipfile

import pytest

from medvault.core.dicom.zipsafe import ZipLimits, ZipRejected, iter_zip_members

from .helpers import zip_bytes


def _members(data: bytes, **limits) -> list[tuple[str, bytes]]:
    return list(iter_zip_members(io.BytesIO(data), ZipLimits(**limits)))


def test_plain_zip_yields_members():
    data = zip_bytes({"a/b.dcm": b"one", "c.dcm": b"two"})
    assert _members(data) == [("a/b.dcm", b"one"), ("c.dcm", b"two")]


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/passwd", "C:/x.dcm", "..\\x.dcm"])
def test_paths_outside_the_archive_are_refused(name):
    data = zip_bytes({"ok.dcm": b"x", name: b"y"})
    with pytest.raises(ZipRejected, match="outside the archive"):
        _members(data)


def test_zip_bomb_ratio():
    data = zip_bytes({"bomb.dcm": b"\x00" * (20 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
    assert len(data) < 100_000
    with pytest.raises(ZipRejected, match="possible ZIP bomb"):
        _members(data)


def test_total_size_and_member_count():
    data = zip_bytes({f"{i}.dcm": b"x" * 1000 for i in range(5)}, compression=zipfile.ZIP_STORED)
    with pytest.raises(ZipRejected, match="more than the limit of 4000"):
        _members(data, max_total_bytes=4000)
    with pytest.raises(ZipRejected, match="holds 5 files"):
        _members(data, max_members=4)


def test_lying_sizes_are_caught():
    data = bytearray(zip_bytes({"a.dcm": b"A" * 5000}, compression=zipfile.ZIP_STORED))
    # Rewrite the declared uncompressed size in the central directory to 10 bytes.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    with pytest.raises(ZipRejected):
        _members(bytes(data))


def test_not_a_zip():
    with pytest.raises(ZipRejected, match="not a readable ZIP"):
        _members(b"PK\x03\x04 garbage")
