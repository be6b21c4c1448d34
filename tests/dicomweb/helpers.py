"""Small helpers for DICOMweb tests."""

from __future__ import annotations

from typing import Any

from medvault.core.dicom.multipart import (
    boundary_new,
    multipart_build,
    multipart_content_type,
    multipart_parse,
)


def stow_body(files: list[bytes]) -> tuple[bytes, str]:
    boundary = boundary_new()
    body = b"".join(multipart_build([(f, "application/dicom") for f in files], boundary))
    return body, multipart_content_type(boundary, "application/dicom")


def stow(client: Any, headers: dict[str, str], files: list[bytes], study: str | None = None) -> Any:
    body, ctype = stow_body(files)
    url = "/dicomweb/studies" + (f"/{study}" if study else "")
    return client.post(url, data=body, content_type=ctype, **headers)


def parts_of(response: Any) -> list[bytes]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return [p.content for p in multipart_parse(body, response["Content-Type"])]


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]
