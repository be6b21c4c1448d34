"""Reads of the retrieval app: finding similar instances the user may see."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np

from medvault.archive.models import Instance
from medvault.retrieval.errors import QueryError
from medvault.retrieval.index import managed_index
from medvault.retrieval.models import Embedding


@dataclass(frozen=True)
class SimilarFilters:
    """Optional restrictions on top of the user's visible studies (always applied)."""

    modalities: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    exclude_own_study: bool = False


NO_FILTERS = SimilarFilters()


@dataclass(frozen=True)
class Match:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    score: float
    label: str
    study_date: date | None
    modality: str
    embedding_id: int = field(repr=False, default=0)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("embedding_id")
        out["score"] = round(self.score, 4)
        out["study_date"] = self.study_date.isoformat() if self.study_date else None
        return out


@dataclass(frozen=True)
class SimilarResult:
    model_name: str
    model_version: str
    matches: list[Match]
    method: str
    search_ms: float


def _visible_study_ids(user: Any) -> np.ndarray | None:
    """Study ids the user may see; ``None`` means all (administrators, or no user: CLI)."""
    from medvault.accounts.permissions import is_administrator
    from medvault.archive.access import visible_to

    if user is None or is_administrator(user):
        return None
    return np.fromiter(visible_to(user).values_list("id", flat=True), dtype=np.int64)


def visible_instance(*, user: Any, sop_instance_uid: str) -> Instance | None:
    """The instance with this UID if ``user`` may see its study (``None`` for no user: CLI)."""
    qs = Instance.objects.select_related("series__study").filter(sop_instance_uid=sop_instance_uid)
    if user is not None:
        from medvault.archive.access import visible_to

        qs = qs.filter(series__study__in=visible_to(user))
    return qs.first()


def instance_embedding(*, instance: Instance, model_name: str | None = None) -> Embedding | None:
    """The newest stored embedding of ``instance`` (of ``model_name`` when given)."""
    qs = Embedding.objects.filter(instance=instance)
    if model_name:
        qs = qs.filter(model_name=model_name)
    return qs.order_by("-id").first()


def similar_instances(
    *,
    user: Any,
    vector: np.ndarray,
    model_name: str,
    model_version: str,
    k: int,
    filters: SimilarFilters = NO_FILTERS,
    query_study_id: int | None = None,
) -> SimilarResult:
    """The ``k`` most similar instances that ``user`` may see, best first.

    ``user=None`` searches the whole archive (the operator's CLI). Permissions are applied
    twice: the index is searched only within the visible studies, and the matches are
    checked against the database again before they are returned.
    """
    t0 = time.perf_counter()
    studies = _visible_study_ids(user)
    exclude = [query_study_id] if (filters.exclude_own_study and query_study_id) else None
    index = managed_index(model_name, model_version)
    # Ask for a few extra: rows replaced since the last sync drop out when resolved below.
    try:
        found = index.search(
            np.asarray(vector, dtype=np.float32), k + 4, studies=studies,
            modalities=list(filters.modalities) or None, labels=list(filters.labels) or None,
            exclude_studies=exclude,
        )
    except ValueError as exc:  # e.g. a query vector of another dimension than the index
        raise QueryError(f"cannot search the {model_name} index: {exc}", 422) from exc
    scores = dict(found.pairs())
    rows = (Embedding.objects.filter(id__in=list(scores), model_name=model_name,
                                     model_version=model_version)
            .values_list("id", "label", "instance__sop_instance_uid",
                         "instance__series__series_instance_uid",
                         "instance__series__study__study_instance_uid",
                         "instance__series__study_id", "instance__series__study__study_date",
                         "instance__series__modality"))
    # Second permission check, against the study ids read from visible_to() for this
    # request (not the index's copy): a stale index can lose a match, never leak one.
    allowed_studies = None if studies is None else set(studies.tolist())
    by_id = {row[0]: row for row in rows if allowed_studies is None or row[5] in allowed_studies}
    matches: list[Match] = []
    for key, score in found.pairs():
        row = by_id.get(key)
        if row is None:
            continue
        _, label, sop, series_uid, study_uid, study_id, study_date, modality = row
        if exclude and study_id in exclude:
            continue
        if filters.labels and label not in filters.labels:
            continue
        matches.append(Match(
            sop_instance_uid=sop,
            series_instance_uid=series_uid,
            study_instance_uid=study_uid,
            score=float(score),
            label=label,
            study_date=study_date,
            modality=modality,
            embedding_id=key,
        ))
        if len(matches) == k:
            break
    return SimilarResult(model_name, model_version, matches, found.method,
                         (time.perf_counter() - t0) * 1000.0)
