"""One matching key as a filter on the archive index (PS3.4 C.2.2.2), for QIDO-RS and C-FIND.

Matching follows PS3.4 C.2.2.2: single value, list of UIDs, universal (empty value),
wildcard (``*`` and ``?``), and range matching for dates and times. Person names match
case-insensitively; ``fuzzy`` makes them match any name component by prefix. Wildcards become
escaped SQL GLOB/LIKE patterns (``medvault.archive.query.wildcard``), never regular expressions.
"""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Exists, OuterRef, Q

from medvault.archive.models import Series
from medvault.archive.query.attributes import Attribute, Level, field_path
from medvault.archive.query.wildcard import WildcardError, has_wildcard, pattern_normalise

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class QueryError(ValueError):
    """A query key or value that cannot be understood (answered with 400 / 0xA900)."""


def uid_valid(value: str) -> bool:
    """A UID as PS3.5 9.1 writes it: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and bool(UID_RE.match(value))


def _date_parse(text: str, attribute: Attribute) -> dt.date:
    cleaned = text.strip().replace(".", "").replace("-", "")
    try:
        return dt.datetime.strptime(cleaned, "%Y%m%d").date()
    except ValueError:
        raise QueryError(f"{attribute.keyword}: {text!r} is not a date (YYYYMMDD)") from None


def _time_norm(text: str, attribute: Attribute) -> str:
    cleaned = text.strip().replace(":", "")
    if not re.match(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$", cleaned):
        raise QueryError(f"{attribute.keyword}: {text!r} is not a time (HHMMSS.FFFFFF)")
    return cleaned


def match_q(level: Level, attribute: Attribute, value: str, *, fuzzy: bool = False) -> Q | None:
    """The filter for one matching key; None for universal matching (empty value, ``*``)."""
    path = field_path(level, attribute)
    if path is None:
        raise QueryError(f"{attribute.keyword} cannot be matched at the {level.value} level")
    value = value.strip()
    if value in ("", "*"):
        return None
    kind = attribute.kind
    if kind == "uid":
        uids = [v.strip() for v in re.split(r"[\\,]", value) if v.strip()]
        bad = [u for u in uids if not uid_valid(u)]
        if bad:
            raise QueryError(f"{attribute.keyword}: {bad[0]!r} is not a valid UID")
        return Q(**{f"{path}__in": uids})
    if kind in ("date", "time"):
        return _range_q(path, attribute, value)
    if kind in ("int", "count"):
        values = value.split("\\")
        try:
            numbers = [int(v) for v in values]
        except ValueError:
            raise QueryError(f"{attribute.keyword}: {value!r} is not an integer") from None
        return Q(**{f"{path}__in": numbers})
    if kind == "modalities":
        return _modalities_q(level, value)
    values = value.split("\\")
    combined = Q()
    try:
        for item in values:
            combined |= _string_q(path, item, case_insensitive=kind == "pn", fuzzy=fuzzy and kind == "pn")
    except WildcardError as exc:
        raise QueryError(f"{attribute.keyword}: {exc}") from None
    return combined


def _string_q(path: str, value: str, *, case_insensitive: bool, fuzzy: bool) -> Q:
    if fuzzy:
        # Any name component (family, given, ...) that starts with each word given.
        pattern_normalise(value)  # the same length cap
        words = [w for w in re.split(r"[\s^,]+", value.replace("*", "").replace("?", "")) if w]
        q = Q()
        for word in words:
            q &= (
                Q(**{f"{path}__dicom_iwildcard": f"{word}*"})
                | Q(**{f"{path}__dicom_iwildcard": f"*^{word}*"})
                | Q(**{f"{path}__dicom_iwildcard": f"* {word}*"})
            )
        return q
    if case_insensitive:
        # LOWER() on both sides rather than Django's iexact: on MySQL/MariaDB that relies on
        # the column's collation, and MedVault's columns are binary there.
        return Q(**{f"{path}__dicom_iwildcard": pattern_normalise(value)})
    if has_wildcard(value):
        return Q(**{f"{path}__dicom_wildcard": pattern_normalise(value)})
    return Q(**{path: value})


def _range_q(path: str, attribute: Attribute, value: str) -> Q:
    is_date = attribute.kind == "date"

    def parse(text: str) -> dt.date | str:
        return _date_parse(text, attribute) if is_date else _time_norm(text, attribute)

    if is_date and "-" in value and not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        low, _, high = value.partition("-")
    elif not is_date and "-" in value:
        low, _, high = value.partition("-")
    else:
        single = parse(value)
        if is_date:
            return Q(**{path: single})
        return Q(**{f"{path}__startswith": single})
    q = Q()
    if low.strip():
        q &= Q(**{f"{path}__gte": parse(low)})
    if high.strip():
        upper = parse(high)
        # A time's upper bound includes all of its fractions of a second.
        q &= Q(**{f"{path}__lte": upper if is_date else str(upper) + "~"})
    if not low.strip() and not high.strip():
        raise QueryError(f"{attribute.keyword}: empty range {value!r}")
    if not is_date:
        q &= ~Q(**{path: ""})
    return q


def _modalities_q(level: Level, value: str) -> Q:
    modalities = [m.strip() for m in value.split("\\") if m.strip()]
    if level is Level.STUDY:
        ref = OuterRef("pk")
    elif level is Level.SERIES:
        ref = OuterRef("study_id")
    elif level is Level.IMAGE:
        ref = OuterRef("series__study_id")
    else:
        ref = None
    if ref is None:
        raise QueryError("ModalitiesInStudy cannot be matched at the PATIENT level")
    q = Q()
    for modality in modalities:
        if has_wildcard(modality):
            try:
                lookup = {"modality__dicom_wildcard": pattern_normalise(modality)}
            except WildcardError as exc:
                raise QueryError(f"ModalitiesInStudy: {exc}") from None
        else:
            lookup = {"modality": modality}
        q |= Q(Exists(Series.objects.filter(study_id=ref, **lookup)))
    return q
