"""THE search of the archive index: ``rows_matching``, called by QIDO-RS and C-FIND alike.

Each door turns its request into the same form first: a level and a list of matching keys,
``(Attribute, value)`` pairs with the value as DICOM writes it (``\\`` between the values of a
list, ``-`` in a range). QIDO-RS takes them from its query parameters, C-FIND from the
elements of its identifier. The rows are then the same for both, and only the studies the
principal may read (``archive.access.visible_to``) are searched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from medvault.archive.access import visible_to
from medvault.archive.models import Instance, Patient, Series, Study
from medvault.archive.query.attributes import Attribute, Level, attribute_lookup, field_path
from medvault.archive.query.matching import match_q

# One matching key: an indexed attribute and the value to match it against.
MatchKey = tuple[Attribute, str]


def matchable(level: Level, key: str) -> Attribute | None:
    """The indexed attribute ``key`` (a keyword or 8 hex digits) names, if rows of ``level``
    can be matched on it; None when the index cannot (the door then ignores the key)."""
    attribute = attribute_lookup(key)
    if attribute is None or field_path(level, attribute) is None:
        return None
    return attribute


def level_queryset(level: Level, studies: QuerySet[Study]) -> QuerySet[Any]:
    """All rows of ``level`` that belong to ``studies``, in the order answers are given."""
    if level is Level.STUDY:
        return studies.select_related("patient").order_by("pk")
    if level is Level.SERIES:
        return (
            Series.objects.filter(study__in=studies.values("pk"))
            .select_related("study", "study__patient")
            .order_by("study_id", "series_number", "pk")
        )
    if level is Level.IMAGE:
        return (
            Instance.objects.filter(series__study__in=studies.values("pk"))
            .select_related("series", "series__study", "series__study__patient")
            .defer("metadata")
            .order_by("series_id", "instance_number", "pk")
        )
    return Patient.objects.filter(studies__in=studies.values("pk")).distinct().order_by("pk")


def rows_matching(*, principal: Any, level: Level, keys: Iterable[MatchKey], fuzzy: bool = False) -> QuerySet[Any]:
    """The rows of ``level`` in the studies ``principal`` may read that match every key.

    ``fuzzy`` makes person names match any name component by prefix (QIDO-RS
    ``fuzzymatching=true``).

    Raises
    ------
    QueryError
        On a key that cannot be matched at ``level`` or a value that cannot be understood
        (QIDO-RS answers 400, C-FIND 0xA900).
    """
    qs = level_queryset(level, visible_to(principal))
    for attribute, value in keys:
        q = match_q(level, attribute, value, fuzzy=fuzzy)
        if q is not None:
            qs = qs.filter(q)
    return qs
