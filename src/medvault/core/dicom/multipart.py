"""multipart/related bodies (RFC 2387) as DICOMweb uses them (PS3.18 8.6.1.2).

Pure Python, no Django: STOW-RS parses request bodies with :func:`multipart_parse`, WADO-RS
builds response bodies with :func:`multipart_build`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message."""


@dataclass(frozen=True)
class MediaType:
    """A parsed media type such as ``multipart/related; type="application/dicom"``."""

    type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def main(self) -> str:
        return self.type.split("/", 1)[0]

    def __str__(self) -> str:
        text = self.type
        for key, value in self.params.items():
            text += f'; {key}="{value}"' if _needs_quotes(value) else f"; {key}={value}"
        return text


@dataclass(frozen=True)
class Part:
    """One body part: its headers (lower-case names) and its content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _needs_quotes(value: str) -> bool:
    return not _TOKEN_RE.match(value)


def media_type_parse(value: str) -> MediaType:
    """Parse a Content-Type or one Accept range into type and parameters.

    Parameter names are lower-cased; quoted values are unquoted. Semicolons inside quoted
    values (``type="application/dicom; x=y"``) are handled.
    """
    items = _split_outside_quotes(value, ";")
    main = items[0].strip().lower() if items else ""
    params: dict[str, str] = {}
    for item in items[1:]:
        if "=" not in item:
            continue
        key, raw = item.split("=", 1)
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        params[key.strip().lower()] = raw
    return MediaType(main, params)


def accept_parse(header: str) -> list[MediaType]:
    """Split an Accept header into media ranges, ordered by descending ``q``."""
    ranges = [media_type_parse(p) for p in _split_outside_quotes(header, ",") if p.strip()]

    def quality(mt: MediaType) -> float:
        try:
            return float(mt.params.get("q", "1"))
        except ValueError:
            return 0.0

    return sorted((r for r in ranges if quality(r) > 0), key=quality, reverse=True)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


def multipart_parse(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart body into its parts.

    Raises
    ------
    MultipartError
        When the content type is not multipart, has no boundary, or the body does not hold
        a closed sequence of parts delimited by that boundary.
    """
    media = media_type_parse(content_type)
    if media.main != "multipart":
        raise MultipartError(f"expected a multipart content type, got {media.type or 'none'!r}")
    boundary = media.params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise MultipartError("the multipart content type has no valid boundary parameter")
    return list(_iter_parts(body, boundary.encode("latin-1")))


def _iter_parts(body: bytes, boundary: bytes) -> Iterator[Part]:
    delimiter = b"--" + boundary
    # The first delimiter may be at the very start, or after a preamble and CRLF.
    if body.startswith(delimiter):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise MultipartError("the body does not contain the boundary given in Content-Type")
        pos += 2
    pos += len(delimiter)
    closed = False
    count = 0
    while True:
        if body.startswith(b"--", pos):
            closed = True
            break
        # Transport padding (spaces/tabs) then CRLF after the delimiter.
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise MultipartError("malformed delimiter line in multipart body")
        start = eol + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise MultipartError("multipart body ends before the closing boundary")
        yield _part_parse(body[start:end])
        count += 1
        pos = end + 2 + len(delimiter)
    if not closed:
        raise MultipartError("multipart body has no closing boundary")
    if count == 0:
        raise MultipartError("multipart body holds no parts")


def _part_parse(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        return Part({}, raw[2:])
    sep = raw.find(b"\r\n\r\n")
    if sep < 0:
        raise MultipartError("a body part has no blank line after its headers")
    headers: dict[str, str] = {}
    for line in raw[:sep].split(b"\r\n"):
        if b":" not in line:
            raise MultipartError("a body part has a malformed header line")
        name, value = line.split(b":", 1)
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return Part(headers, raw[sep + 4 :])


def boundary_new() -> str:
    return "medvault-" + secrets.token_hex(16)


def multipart_build(
    parts: Iterable[tuple[bytes, str] | tuple[bytes, str, dict[str, str]]], boundary: str
) -> Iterator[bytes]:
    """Yield a multipart body chunk by chunk (one chunk per part, then the close delimiter).

    Each part is ``(content, content_type)`` or ``(content, content_type, extra_headers)``.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    for item in parts:
        content, ctype = item[0], item[1]
        extra: dict[str, str] = item[2] if len(item) > 2 else {}
        head = [b"Content-Type: " + ctype.encode("latin-1")]
        head += [f"{k}: {v}".encode("latin-1") for k, v in extra.items()]
        yield delimiter + b"\r\n" + b"\r\n".join(head) + b"\r\n\r\n" + content + b"\r\n"
    yield delimiter + b"--\r\n"


def multipart_content_type(boundary: str, part_type: str, extra: Sequence[str] = ()) -> str:
    """The Content-Type header value of a body built by :func:`multipart_build`."""
    params = [f'type="{part_type}"', f"boundary={boundary}", *extra]
    return "multipart/related; " + "; ".join(params)
