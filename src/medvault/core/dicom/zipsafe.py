"""Read ZIP uploads within limits: no path tricks, no bombs.

Every check that can be made from the central directory is made before anything is
decompressed; the declared sizes are then enforced while reading, because they can lie.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO


class ZipRejected(ValueError):
    """The whole archive is refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 4 * 1024**3
    max_ratio: int = 200
    max_members: int = 100_000
    # Small members compress absurdly well (a 1 KiB file of zeros); below this size a
    # high ratio is harmless and not counted against ``max_ratio``.
    ratio_floor_bytes: int = 1024 * 1024


def _unsafe_name(name: str) -> bool:
    if "\x00" in name or name.startswith(("/", "\\")):
        return True
    if PureWindowsPath(name).drive:
        return True
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return ".." in parts


def is_zip(data_or_head: bytes) -> bool:
    return data_or_head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def iter_zip_members(source: IO[bytes], limits: ZipLimits) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` for every file in the archive.

    Raises ``ZipRejected`` before yielding anything when the central directory breaks a
    rule, and while reading when a member expands beyond what it declared.
    """
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ZipRejected(f"not a readable ZIP archive: {exc}") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > limits.max_members:
            raise ZipRejected(
                f"ZIP holds {len(infos)} files, more than the limit of {limits.max_members}"
            )
        total = 0
        for info in infos:
            if _unsafe_name(info.filename):
                raise ZipRejected(
                    f"ZIP member name {info.filename[:200]!r} points outside the archive "
                    "(absolute path or '..'); the archive is refused"
                )
            if info.flag_bits & 0x1:
                raise ZipRejected(f"ZIP member {info.filename[:200]!r} is encrypted")
            total += info.file_size
            if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise ZipRejected(
                    f"ZIP member {info.filename[:200]!r} expands {info.file_size} bytes from "
                    f"{info.compress_size} (ratio over {limits.max_ratio}); possible ZIP bomb"
                )
        if total > limits.max_total_bytes:
            raise ZipRejected(
                f"ZIP expands to {total} bytes, more than the limit of {limits.max_total_bytes}"
            )
        for info in infos:
            try:
                with archive.open(info) as member:
                    data = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise ZipRejected(f"ZIP member {info.filename[:200]!r} is damaged: {exc}") from None
            if len(data) > info.file_size:
                raise ZipRejected(
                    f"ZIP member {info.filename[:200]!r} expands beyond its declared size"
                )
            yield info.filename, data
