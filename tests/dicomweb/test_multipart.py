"""multipart/related parsing and building (pure, no Django)."""

from __future__ import annotations

import pytest

from medvault.core.dicom.multipart import (
    MultipartError,
    accept_parse,
    media_type_parse,
    multipart_build,
    multipart_content_type,
    multipart_parse,
)


def test_round_trip_keeps_bytes_exactly() -> None:
    payloads = [b"\r\n--x\r\n" + bytes(range(256)) * 3, b"", b"--medvault-fake\r\n"]
    boundary = "medvault-abc123"
    body = b"".join(multipart_build([(p, "application/dicom") for p in payloads], boundary))
    parts = multipart_parse(body, multipart_content_type(boundary, "application/dicom"))
    assert [p.content for p in parts] == payloads
    assert all(p.content_type == "application/dicom" for p in parts)


def test_preamble_and_quoted_boundary() -> None:
    body = b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b1--\r\nepilogue"
    parts = multipart_parse(body, 'multipart/related; type="application/dicom"; boundary="b1"')
    assert parts[0].content == b"DATA"


@pytest.mark.parametrize(
    "body, ctype",
    [
        (b"--b1\r\nContent-Type: application/dicom\r\n\r\nDATA", "multipart/related; boundary=b1"),
        (b"no boundary here", "multipart/related; boundary=b1"),
        (b"--b1\r\n\r\nX\r\n--b1--", "multipart/related"),
        (b"--b1\r\n\r\nX\r\n--b1--", "application/dicom"),
        (b"--b1--\r\n", "multipart/related; boundary=b1"),
        (b"--b1\r\nBroken header line\r\n\r\nX\r\n--b1--", "multipart/related; boundary=b1"),
    ],
)
def test_malformed_bodies_are_rejected(body: bytes, ctype: str) -> None:
    with pytest.raises(MultipartError):
        multipart_parse(body, ctype)


def test_media_type_and_accept_parsing() -> None:
    mt = media_type_parse('multipart/related; type="application/dicom"; transfer-syntax=*')
    assert mt.type == "multipart/related"
    assert mt.params == {"type": "application/dicom", "transfer-syntax": "*"}
    ranges = accept_parse('image/png;q=0.5, image/jpeg, text/html;q=0')
    assert [r.type for r in ranges] == ["image/jpeg", "image/png"]
