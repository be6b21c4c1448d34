"""Pseudonymous UIDs for researchers (DICOM PS3.15 Annex E: no Retain UIDs Option).

Every request of a de-identified user (``permissions.is_deidentified_user``) passes here:

* **Out.** In every page, JSON answer and redirect sent to a researcher, each Study, Series
  and SOP Instance UID stored in the archive is replaced by ``deid.uid_pseudonym(uid)``.
  Other UIDs in DICOM JSON (FrameOfReferenceUID, ReferencedSOPInstanceUID, ...) are already
  replaced by ``deid.deidentify_json``. The pseudonyms shown are recorded (``UidPseudonym``).
* **In.** In the URL path, the query string and a JSON or form body, a recorded pseudonym is
  replaced by its original before the view runs, so every view applies its usual permission
  checks (``visible_to``) to the original. An original stored UID sent by a researcher is
  replaced by a UID that names nothing, so the original cannot be used to look a study up.

Binary answers (PNG, JPEG, frames) carry no UIDs and are left alone. Researchers get no DICOM
files (the role table), so no streamed DICOM passes here.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable

from django.http import HttpRequest, HttpResponse, QueryDict

from medvault.accounts import deid
from medvault.accounts.api_auth import api_user
from medvault.accounts.permissions import is_deidentified_user

# A UID: a first component 0, 1 or 2 and at least two more (floats and IP-like tokens are only
# replaced when they are a stored UID, which they never are).
_UID = r"(?<![0-9.])[0-2](?:\.[0-9]+){2,}(?![0-9.])"
UID_TEXT = re.compile(_UID)
UID_BYTES = re.compile(_UID.encode())
# Sent instead of an original UID a researcher names: valid syntax, never stored.
UNKNOWN_UID = "2.25.0"
_TEXT_TYPES = ("text/", "application/json", "application/dicom+json", "application/xml",
               "application/dicom+xml", "application/javascript")
_BODY_TYPES = ("application/json", "application/x-www-form-urlencoded", "application/dicom+json")
_MAX_BODY = 1 << 20
_CHUNK = 500


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _pseudonym_if_stored(stored: set[str], match: re.Match[str]) -> str:
    uid = match.group(0)
    return deid.uid_pseudonym(uid) if uid in stored else uid


def stored_uids(candidates: Iterable[str]) -> set[str]:
    """Those of ``candidates`` that are a stored Study, Series or SOP Instance UID."""
    from medvault.archive.models import Instance, Series, Study

    found: set[str] = set()
    for chunk in _chunks(c for c in candidates if len(c) <= 64):
        found.update(Study.objects.filter(study_instance_uid__in=chunk)
                     .values_list("study_instance_uid", flat=True))
        found.update(Series.objects.filter(series_instance_uid__in=chunk)
                     .values_list("series_instance_uid", flat=True))
        found.update(Instance.objects.filter(sop_instance_uid__in=chunk)
                     .values_list("sop_instance_uid", flat=True))
    return found


def incoming_map(tokens: Iterable[str]) -> dict[str, str]:
    """For UIDs a researcher sent: pseudonym -> original, stored original -> UNKNOWN_UID."""
    from medvault.accounts.models import UidPseudonym

    tokens = {t for t in tokens if t != UNKNOWN_UID}
    out: dict[str, str] = {}
    for chunk in _chunks(tokens):
        rows = UidPseudonym.objects.filter(pseudonym__in=chunk)
        out.update(rows.values_list("pseudonym", "original"))
    for original in stored_uids(tokens - set(out)):
        out[original] = UNKNOWN_UID
    return out


def _text_in(text: str) -> str:
    mapping = incoming_map(UID_TEXT.findall(text))
    return UID_TEXT.sub(lambda m: mapping.get(m.group(0), m.group(0)), text) if mapping else text


def _request_translate(request: HttpRequest) -> None:
    path_info = _text_in(request.path_info)
    if path_info != request.path_info:
        request.path = request.path[: len(request.path) - len(request.path_info)] + path_info
        request.path_info = path_info
    query = request.META.get("QUERY_STRING", "")
    params = QueryDict(query, mutable=True)
    if any(UID_TEXT.search(v) for key in params for v in params.getlist(key)):
        for key in list(params):
            params.setlist(key, [_text_in(v) for v in params.getlist(key)])
        request.META["QUERY_STRING"] = params.urlencode()
        request.__dict__.pop("GET", None)
    content_type = request.META.get("CONTENT_TYPE", "")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if (request.method in ("POST", "PUT", "PATCH") and content_type.startswith(_BODY_TYPES)
            and length.isdigit() and 0 < int(length) <= _MAX_BODY):
        body = request.body
        mapping = incoming_map(t.decode() for t in UID_BYTES.findall(body))
        if mapping:
            def swap(match: re.Match[bytes]) -> bytes:
                token = match.group(0).decode()
                return mapping.get(token, token).encode()

            new = UID_BYTES.sub(swap, body)
            request._body = new
            request._stream = io.BytesIO(new)
            request.META["CONTENT_LENGTH"] = str(len(new))
            for cached in ("_post", "_files"):
                request.__dict__.pop(cached, None)


def _response_translate(response: HttpResponse) -> None:
    content_type = response.get("Content-Type", "")
    if not response.streaming and content_type.startswith(_TEXT_TYPES):
        body = response.content
        found = stored_uids(t.decode() for t in set(UID_BYTES.findall(body)))
        if found:
            response.content = UID_BYTES.sub(
                lambda m: (deid.uid_pseudonym(m.group(0).decode()).encode()
                           if m.group(0).decode() in found else m.group(0)), body)
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
    for header in ("Location", "Content-Location", "Content-Disposition", "Link"):
        if response.has_header(header):
            value = response[header]
            found = stored_uids(UID_TEXT.findall(value))
            if found:
                response[header] = UID_TEXT.sub(functools.partial(_pseudonym_if_stored, found), value)


def pseudonyms_record(issued: dict[str, str]) -> None:
    """Store the pseudonym -> original pairs not stored yet."""
    from medvault.accounts.models import UidPseudonym

    by_pseudonym = {p: o for o, p in issued.items()}
    known: set[str] = set()
    for chunk in _chunks(by_pseudonym):
        rows = UidPseudonym.objects.filter(pseudonym__in=chunk)
        known.update(rows.values_list("pseudonym", flat=True))
    new = [UidPseudonym(pseudonym=p, original=o) for p, o in by_pseudonym.items() if p not in known]
    if new:
        UidPseudonym.objects.bulk_create(new, ignore_conflicts=True, batch_size=_CHUNK)


def pseudonym_issue(uid: str) -> str:
    """The pseudonym of ``uid``, recorded so that it resolves when a researcher sends it
    (as if it had been shown; for links made outside a researcher's request)."""
    pseudonym = deid.uid_pseudonym(uid)
    pseudonyms_record({uid: pseudonym})
    return pseudonym


def _deidentified(request: HttpRequest) -> bool:
    if is_deidentified_user(getattr(request, "user", None)):
        return True
    return bool(request.META.get("HTTP_AUTHORIZATION")) and is_deidentified_user(api_user(request))


class ResearcherUidMiddleware:
    """Pseudonymous UIDs in and out for de-identified users (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _deidentified(request):
            return self.get_response(request)
        issued = deid.uids_issued_begin()
        sent = (request.path, request.path_info, request.META.get("QUERY_STRING", ""))
        try:
            _request_translate(request)
            response = self.get_response(request)
            # Outer middleware (CommonMiddleware's slash redirect, logging) sees what was sent.
            request.path, request.path_info, request.META["QUERY_STRING"] = sent
            request.__dict__.pop("GET", None)
            _response_translate(response)
            if issued:
                pseudonyms_record(issued)
        finally:
            deid.uids_issued_end()
        return response
