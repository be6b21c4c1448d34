"""Content negotiation for DICOMweb (PS3.18 8.7): what each resource sends for an Accept header.

``negotiate`` is the one negotiator: it walks the media ranges of an Accept header in order
of preference and takes the first one the resource can answer with, else 406. The functions
below it say, per kind of resource, which ranges those are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.http import HttpRequest

from medvault.core.dicom.multipart import MediaType, accept_parse
from medvault.dicomweb.errors import not_acceptable

T = TypeVar("T")

DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def negotiate(accept: str, answer: Callable[[MediaType], T | None], refusal: str) -> T:
    """What the first acceptable range of ``accept`` gets (``answer`` returns None for a
    range the resource cannot send); 406 with ``refusal`` when no range fits."""
    for media in accept_parse(accept):
        chosen = answer(media)
        if chosen is not None:
            return chosen
    raise not_acceptable(refusal)


def _accept(request: HttpRequest, default: str) -> str:
    return request.META.get("HTTP_ACCEPT", "") or default


def _rendered_accept(request: HttpRequest, default: str) -> str:
    """Rendered resources also take the ``accept`` query parameter (PS3.18 8.3.3.1)."""
    return request.GET.get("accept") or request.META.get("HTTP_ACCEPT", "") or default


def dicom_json(request: HttpRequest) -> None:
    """QIDO-RS results and WADO-RS metadata: DICOM JSON (406 otherwise)."""
    accept = _accept(request, "*/*")

    def answer(media: MediaType) -> bool | None:
        return True if media.type in (DICOM_JSON, "application/json", "*/*", "application/*") else None

    negotiate(accept, answer, f"QIDO-RS answers {DICOM_JSON}; Accept was {accept[:100]!r}")


def instance_syntax(request: HttpRequest) -> str:
    """WADO-RS instances: the transfer syntax asked for, ``*`` (as stored) or a UID."""
    accept = _accept(request, "*/*")

    def answer(media: MediaType) -> str | None:
        if media.type in ("*/*", "multipart/*"):
            return "*"
        if media.type == "multipart/related":
            part = media.params.get("type", "application/dicom").lower()
            if part in ("application/dicom", "*/*", "application/*"):
                return media.params.get("transfer-syntax", EXPLICIT_LE if part == "application/dicom" else "*")
        if media.type == "application/dicom":
            return media.params.get("transfer-syntax", EXPLICIT_LE)
        return None

    return negotiate(
        accept, answer,
        f"instances are served as multipart/related; type=\"application/dicom\"; Accept was {accept[:100]!r}",
    )


def octet_stream(request: HttpRequest) -> None:
    """WADO-RS frames and bulk data: uncompressed, as multipart/related of octet streams."""

    def answer(media: MediaType) -> bool | None:
        if media.type in ("*/*", "application/octet-stream", "multipart/*"):
            return True
        if media.type == "multipart/related":
            part = media.params.get("type", "application/octet-stream").lower()
            ts = media.params.get("transfer-syntax", EXPLICIT_LE)
            if part in ("application/octet-stream", "*/*", "application/*") and ts in ("*", EXPLICIT_LE):
                return True
        return None

    negotiate(
        _accept(request, "*/*"), answer,
        "frames are served uncompressed as multipart/related; type=\"application/octet-stream\"",
    )


def rendered_image(request: HttpRequest) -> str:
    """A rendered frame or thumbnail: ``image/jpeg`` (the default) or ``image/png``."""
    accept = _rendered_accept(request, "image/jpeg")

    def answer(media: MediaType) -> str | None:
        if media.type in ("image/jpeg", "image/png"):
            return media.type
        if media.type in ("*/*", "image/*"):
            return "image/jpeg"
        return None

    return negotiate(accept, answer, f"rendered images are image/jpeg or image/png; Accept was {accept[:100]!r}")


def rendered_images(request: HttpRequest) -> str:
    """A rendered study or series: multipart/related of ``image/jpeg`` (default) or ``image/png``."""
    accept = _rendered_accept(request, "*/*")

    def answer(media: MediaType) -> str | None:
        inner = media.params.get("type", "").strip('"').lower() if media.type == "multipart/related" else media.type
        if inner in ("image/jpeg", "image/png"):
            return inner
        if inner in ("", "*/*", "image/*") and media.type in ("multipart/related", "*/*", "image/*"):
            return "image/jpeg"
        return None

    return negotiate(
        accept, answer,
        'rendered studies and series are multipart/related; type="image/jpeg" or '
        f'type="image/png"; Accept was {accept[:100]!r}',
    )
