"""Reads for DICOMweb: QIDO-RS searches and WADO-RS metadata, answered from the index."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import QueryDict

from medvault.accounts.deid import deidentify_json, removes
from medvault.accounts.permissions import is_deidentified_user
from medvault.archive.access import visible_to
from medvault.archive.models import Instance, Series
from medvault.archive.query.attributes import (
    ATTRIBUTES,
    BY_KEYWORD,
    DEFAULT_TAGS,
    Attribute,
    Level,
    field_path,
    tag_of,
)
from medvault.archive.query.elements import json_element, value_of
from medvault.archive.query.matching import QueryError, match_q, uid_valid
from medvault.archive.query.search import MatchKey, matchable, rows_matching
from medvault.dicomweb import conf
from medvault.dicomweb.errors import bad_request, not_found


def uid_check(value: str, what: str) -> str:
    if not uid_valid(value):
        raise bad_request(f"{what} {value[:80]!r} is not a valid UID")
    return value


@dataclass
class QidoQuery:
    level: Level
    matches: list[MatchKey] = field(default_factory=list)
    include: set[str] = field(default_factory=set)  # tags
    include_all: bool = False
    limit: int = conf.QIDO_MAX_RESULTS_DEFAULT
    offset: int = 0
    fuzzy: bool = False
    study_uid: str | None = None
    series_uid: str | None = None
    warnings: list[str] = field(default_factory=list)


def qido_query_parse(
    level: Level,
    params: QueryDict,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    deidentified: bool = False,
) -> QidoQuery:
    """Turn QIDO-RS query parameters into a :class:`QidoQuery` (400 on bad input)."""
    query = QidoQuery(level=level, study_uid=study_uid, series_uid=series_uid, limit=conf.qido_max_results())
    unsupported: list[str] = []
    for key in params:
        values = params.getlist(key)
        lower = key.lower()
        if lower == "includefield":
            for value in values:
                for item in value.split(","):
                    item = item.strip()
                    if not item:
                        continue
                    if item.lower() == "all":
                        query.include_all = True
                        continue
                    tag = tag_of(item)
                    if tag is None:
                        raise bad_request(f"includefield: unknown attribute {item!r}")
                    query.include.add(tag)
            continue
        if lower in ("limit", "offset"):
            try:
                number = int(values[-1])
            except ValueError:
                raise bad_request(f"{key} must be a non-negative integer") from None
            if number < 0:
                raise bad_request(f"{key} must be a non-negative integer")
            if lower == "limit":
                if number > query.limit:
                    query.warnings.append(f"limit lowered to the maximum of {query.limit}")
                query.limit = min(number, query.limit) if number else query.limit
            else:
                query.offset = number
            continue
        if lower == "fuzzymatching":
            query.fuzzy = values[-1].strip().lower() == "true"
            continue
        if "." in key:
            unsupported.append(key)  # sequence matching
            continue
        tag = tag_of(key)
        if tag is None:
            raise bad_request(f"unknown query parameter {key!r}")
        attribute = matchable(level, tag)
        if attribute is None:
            unsupported.append(key)
            query.include.add(tag)
            continue
        if deidentified and removes(tag):
            unsupported.append(key)
            continue
        value = values[-1]
        try:
            match_q(level, attribute, value, fuzzy=query.fuzzy)
        except QueryError as exc:
            raise bad_request(str(exc)) from None
        query.matches.append((attribute, value))
        query.include.add(tag)
    if unsupported:
        query.warnings.append(
            "matching is not supported on " + ", ".join(sorted(set(unsupported))) + "; ignored"
        )
    return query


def _parent_keys(query: QidoQuery, user: Any) -> list[MatchKey]:
    """The study and series of the URL path as matching keys (404 unless ``user`` sees them).

    The visibility query is built only when the path names a study: building it costs about
    as much as the rest of a QIDO-RS request (docs/benchmarks.md), and ``rows_matching``
    applies it to the search itself."""
    keys: list[MatchKey] = []
    if not (query.study_uid or query.series_uid):
        return keys
    studies = visible_to(user)
    if query.study_uid:
        if not studies.filter(study_instance_uid=query.study_uid).exists():
            raise not_found(f"study {query.study_uid} not found")
        keys.append((BY_KEYWORD["StudyInstanceUID"], query.study_uid))
    if query.series_uid:
        if not Series.objects.filter(
            series_instance_uid=query.series_uid, study__in=studies.values("pk")
        ).exists():
            raise not_found(f"series {query.series_uid} not found")
        keys.append((BY_KEYWORD["SeriesInstanceUID"], query.series_uid))
    return keys


def _result_tags(query: QidoQuery) -> list[Attribute]:
    """Indexed attributes to return: the level's defaults, the levels above it when no parent
    is in the path, and everything indexed at those levels for includefield=all."""
    levels = [query.level]
    if query.level is Level.SERIES and not query.study_uid:
        levels.append(Level.STUDY)
    if query.level is Level.IMAGE:
        if not query.series_uid:
            levels.append(Level.SERIES)
        if not query.study_uid:
            levels.append(Level.STUDY)
    chosen: list[Attribute] = []
    for level in levels:
        for keyword in DEFAULT_TAGS[level]:
            chosen.append(BY_KEYWORD[keyword])
    # The parent UIDs are always returned.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        attribute = BY_KEYWORD[keyword]
        if field_path(query.level, attribute) is not None:
            chosen.append(attribute)
    if query.include_all:
        chosen += [a for a in ATTRIBUTES if field_path(query.level, a) is not None]
    for tag in query.include:
        included = matchable(query.level, tag)
        if included is not None:
            chosen.append(included)
    seen: set[str] = set()
    unique = []
    for attribute in chosen:
        if attribute.tag not in seen:
            seen.add(attribute.tag)
            unique.append(attribute)
    return unique


def _representative_metadata(level: Level, rows: list[Any]) -> dict[int, dict[str, Any]]:
    """Metadata of one instance per result row (for attributes the index has no column for)."""
    if not rows:
        return {}
    if level is Level.IMAGE:
        metas = Instance.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", "metadata")
        return dict(metas)
    key = "series__study_id" if level is Level.STUDY else "series_id"
    result: dict[int, dict[str, Any]] = {}
    for row in rows:
        meta = (
            Instance.objects.filter(**{key: row.pk})
            .order_by("instance_number", "pk")
            .values_list("metadata", flat=True)
            .first()
        )
        result[row.pk] = meta or {}
    return result


def retrieve_url(base: str, level: Level, row: Any) -> str:
    if level is Level.STUDY:
        return f"{base}/studies/{row.study_instance_uid}"
    if level is Level.SERIES:
        return f"{base}/studies/{row.study.study_instance_uid}/series/{row.series_instance_uid}"
    return (
        f"{base}/studies/{row.series.study.study_instance_uid}/series/"
        f"{row.series.series_instance_uid}/instances/{row.sop_instance_uid}"
    )


def qido_search(*, user: Any, query: QidoQuery, base_url: str) -> list[dict[str, Any]]:
    """Run a QIDO-RS search for ``user``; DICOM JSON results (de-identified for researchers)."""
    keys = _parent_keys(query, user) + query.matches
    try:
        qs = rows_matching(principal=user, level=query.level, keys=keys, fuzzy=query.fuzzy)
    except QueryError as exc:  # the parse checked every key; this is only a safety net
        raise bad_request(str(exc)) from None
    rows = list(qs[query.offset : query.offset + query.limit])
    attributes = _result_tags(query)
    indexed = {a.tag for a in attributes}
    extra = {t for t in query.include if t not in indexed}
    need_meta = bool(extra) or (query.include_all and query.level is Level.IMAGE)
    metas = _representative_metadata(query.level, rows) if need_meta else {}
    deidentified = is_deidentified_user(user)
    results = []
    for row in rows:
        item: dict[str, Any] = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
        meta = metas.get(row.pk, {})
        if query.include_all and query.level is Level.IMAGE:
            item.update(_without_bulk(meta))
        for tag in extra:
            if tag in meta:
                item[tag] = meta[tag]
        for attribute in attributes:
            item[attribute.tag] = json_element(attribute, value_of(row, query.level, attribute))
        item["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
        item["00081190"] = {"vr": "UR", "Value": [retrieve_url(base_url, query.level, row)]}
        if deidentified:
            item = deidentify_json(item)
        results.append(dict(sorted(item.items())))
    return results


def _without_bulk(meta: dict[str, Any]) -> dict[str, Any]:
    return {t: e for t, e in meta.items() if not (isinstance(e, dict) and "BulkDataURI" in e)}


# --- WADO-RS lookups ------------------------------------------------------------------


def instances_select(
    *, user: Any, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> QuerySet[Instance]:
    """The instances addressed by a WADO-RS path, or 404 when the user may not see any."""
    uid_check(study_uid, "StudyInstanceUID")
    if series_uid is not None:
        uid_check(series_uid, "SeriesInstanceUID")
    if sop_uid is not None:
        uid_check(sop_uid, "SOPInstanceUID")
    study = visible_to(user).filter(study_instance_uid=study_uid).first()
    if study is None:
        raise not_found(f"study {study_uid} not found")
    qs = Instance.objects.filter(series__study=study).select_related("series", "series__study")
    if series_uid is not None:
        qs = qs.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        qs = qs.filter(sop_instance_uid=sop_uid)
    qs = qs.order_by("series__series_number", "series_id", "instance_number", "pk")
    if not qs.exists():
        what = "instance" if sop_uid else "series" if series_uid else "study"
        raise not_found(f"{what} {sop_uid or series_uid or study_uid} not found")
    return qs


def metadata_select(*, user: Any, instances: QuerySet[Instance], base_url: str) -> list[dict[str, Any]]:
    """DICOM JSON metadata of ``instances`` straight from the index (no blob is read).

    Relative ``BulkDataURI`` values (``bulkdata/<tag>``) become absolute URLs.
    """
    rows: Iterable[tuple[str, str, str, dict[str, Any]]] = instances.values_list(
        "series__study__study_instance_uid", "series__series_instance_uid", "sop_instance_uid",
        "metadata",
    )
    deidentified = is_deidentified_user(user)
    out = []
    for study_uid, series_uid, sop_uid, meta in rows:
        prefix = f"{base_url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/"
        _absolutise(meta, prefix)
        out.append(deidentify_json(meta) if deidentified else meta)
    return out


_BULK_URI_RE = re.compile(r'("BulkDataURI"\s*:\s*")(bulkdata/)')


def metadata_json_text(*, instances: QuerySet[Instance], base_url: str) -> str:
    """The metadata of ``instances`` as one DICOM JSON array, spliced from the stored JSON text.

    The fast path for users who see identified data: the stored text is neither parsed nor
    re-serialised; only relative ``BulkDataURI`` values are made absolute.
    """
    rows = instances.annotate(meta_text=Cast("metadata", output_field=TextField())).values_list(
        "series__study__study_instance_uid", "series__series_instance_uid", "sop_instance_uid",
        "meta_text",
    )
    chunks = []
    for study_uid, series_uid, sop_uid, text in rows:
        prefix = f"{base_url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/"

        def absolute(match: re.Match[str], prefix: str = prefix) -> str:
            return match.group(1) + prefix + match.group(2)

        chunks.append(_BULK_URI_RE.sub(absolute, text))
    return "[" + ",".join(chunks) + "]"


def _absolutise(meta: dict[str, Any], prefix: str) -> None:
    for element in meta.values():
        if not isinstance(element, dict):
            continue
        uri = element.get("BulkDataURI")
        if isinstance(uri, str) and not uri.startswith(("http:", "https:", "/")):
            element["BulkDataURI"] = prefix + uri
        elif element.get("vr") == "SQ":
            for item in element.get("Value") or []:
                if isinstance(item, dict):
                    _absolutise(item, prefix)
