"""Reads for the web pages: study search, series/instances of a study, home-page figures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Lower, Replace

from medvault.analysis.selectors import results_visible_to
from medvault.archive.access import visible_to
from medvault.archive.models import Instance, Patient, Series, Study
from medvault.archive.query.wildcard import has_wildcard

SORTS = {
    "date": ("study_date", "study_time", "id"),
    "-date": ("-study_date", "-study_time", "-id"),
    "name": ("patient__patient_name", "id"),
    "-name": ("-patient__patient_name", "-id"),
    "pid": ("patient__patient_id", "id"),
    "-pid": ("-patient__patient_id", "-id"),
    "accession": ("accession_number", "id"),
    "-accession": ("-accession_number", "-id"),
    "description": ("study_description", "id"),
    "-description": ("-study_description", "-id"),
    "modality": ("modalities_in_study", "id"),
    "-modality": ("-modalities_in_study", "-id"),
    "images": ("number_of_instances", "id"),
    "-images": ("-number_of_instances", "-id"),
    "added": ("created_at", "id"),
    "-added": ("-created_at", "-id"),
}


@dataclass
class StudyQuery:
    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    description: str = ""
    sort: str = "-date"

    def is_empty(self) -> bool:
        return not any([self.patient_name, self.patient_id, self.accession, self.date_from,
                        self.date_to, self.modality, self.description])


def wildcard_pattern(pattern: str) -> str:
    """DICOM-style wildcards (``*`` any run, ``?`` one character) for the ``dicom_wildcard``
    lookup (an escaped SQL GLOB/LIKE pattern, never a regex), matched against the value with
    ``^`` turned into a space, so "doe jane" finds "Doe^Jane"."""
    return re.sub(r"[ ^]+", " ", pattern.strip())


def _lowered(queryset: QuerySet[Any], field: str) -> tuple[QuerySet[Any], str]:
    """Annotate LOWER(field): case-insensitive matching that does not depend on the database
    collation (MySQL/MariaDB with a binary collation compares case-sensitively)."""
    alias = "_lower_" + field.replace("__", "_")
    return queryset.annotate(**{alias: Lower(field)}), alias


def text_filter(queryset: QuerySet[Any], field: str, pattern: str, *, words: bool) -> QuerySet[Any]:
    """Case-insensitive match of ``field``: DICOM wildcards when ``*``/``?`` appear;
    otherwise every word must appear (``words``) or the whole value must be equal."""
    pattern = pattern.strip().lower()
    if not pattern:
        return queryset
    if has_wildcard(pattern):
        # The name components' separator ``^`` as a space on both sides (see wildcard_pattern).
        alias = "_wild_" + field.replace("__", "_")
        queryset = queryset.annotate(**{alias: Replace(Lower(field), Value("^"), Value(" "))})
        return queryset.filter(**{f"{alias}__dicom_wildcard": wildcard_pattern(pattern)})
    queryset, alias = _lowered(queryset, field)
    if not words:
        return queryset.filter(**{alias: pattern})
    for word in re.split(r"[\s^,]+", pattern):
        if word:
            queryset = queryset.filter(**{f"{alias}__contains": word})
    return queryset


def study_search(*, user: Any, query: StudyQuery) -> QuerySet[Any]:
    studies = visible_to(user).select_related("patient", "group")
    if query.patient_name:
        studies = text_filter(studies, "patient__patient_name", query.patient_name, words=True)
    if query.patient_id:
        studies = text_filter(studies, "patient__patient_id", query.patient_id, words=False)
    if query.accession:
        studies = text_filter(studies, "accession_number", query.accession, words=False)
    if query.date_from:
        studies = studies.filter(study_date__gte=query.date_from)
    if query.date_to:
        studies = studies.filter(study_date__lte=query.date_to)
    if query.modality:
        modality = query.modality.strip().upper()
        studies = studies.filter(
            Q(modalities_in_study=modality)
            | Q(modalities_in_study__startswith=modality + "\\")
            | Q(modalities_in_study__contains="\\" + modality)
            | Q(pk__in=visible_to(user).filter(series__modality=modality).values("pk"))
        )
    if query.description:
        studies = text_filter(studies, "study_description", query.description, words=True)
    return studies.order_by(*SORTS.get(query.sort, SORTS["-date"]))


def study_series(study: Study) -> QuerySet[Series]:
    return study.series.all().order_by("series_number", "id")


def series_instances(series: Series) -> QuerySet[Instance]:
    return series.instances.all().order_by("instance_number", "id").only(
        "id", "sop_instance_uid", "instance_number", "number_of_frames", "rows", "columns", "blob_key", "series_id"
    )


def storage_figures() -> dict[str, Any]:
    sums = Instance.objects.aggregate(
        n=Count("id"), received=Sum("received_bytes"), stored=Sum("stored_bytes"), raw=Sum("raw_pixel_bytes")
    )
    received = sums["received"] or 0
    stored = sums["stored"] or 0
    return {
        "patients": Patient.objects.count(),
        "studies": Study.objects.count(),
        "series": Series.objects.count(),
        "instances": sums["n"] or 0,
        "received_bytes": received,
        "stored_bytes": stored,
        "ratio": (received / stored) if stored else None,
    }


def recent_analyses(user: Any, limit: int = 8) -> list[Any]:
    """Newest analysis results the user may see (none when reading them fails)."""
    try:
        return list(results_visible_to(user)[:limit])
    except Exception:  # noqa: BLE001 - the home page must render even if analysis is broken
        return []
