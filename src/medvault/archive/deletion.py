"""Deleting from the archive: the one write path for instances, series and studies removed by
an administrator (the Django admin calls it).

Each deletion is audited with the UIDs it removed, the counts of the series and study it
leaves are recomputed from what remains (a series or study left empty goes too), and an
instance's blob is deleted once no row points at it any more (after the commit, so a rollback
never loses bytes). Analysis jobs and results, embeddings and compression tasks of the
instance go with it (their foreign keys cascade).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Count

from medvault.accounts.audit import audit_record
from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance, Series, Study

log = logging.getLogger(__name__)


def _blob_delete_if_unused(key: str) -> None:
    if not key or Instance.objects.filter(blob_key=key).exists():
        return
    try:
        blob_store().delete(key)
    except OSError:  # left for ``medvault scrub`` to report and remove
        log.warning("blob %s of a deleted instance could not be removed", key)


def counts_refresh(*, series: Series | None = None, study: Study) -> None:
    """Recompute the series' and the study's counts from their rows; drop them when empty."""
    if series is not None:
        remaining = series.instances.count()
        if remaining:
            Series.objects.filter(pk=series.pk).update(number_of_instances=remaining)
        else:
            series.delete()
    per_series = list(study.series.annotate(n=Count("instances")).values_list("modality", "n"))
    if not per_series:
        study.delete()
        return
    modalities = sorted({m for m, _ in per_series if m})
    Study.objects.filter(pk=study.pk).update(
        number_of_series=len(per_series),
        number_of_instances=sum(n for _, n in per_series),
        modalities_in_study="\\".join(modalities),
    )


def instance_delete(*, instance: Instance, by: Any, request: Any = None, detail: str = "") -> None:
    """Delete one instance, audited, with its series' and study's counts kept true."""
    series = instance.series
    study = series.study
    key = instance.blob_key
    with transaction.atomic():
        audit_record(
            user=by, action="delete", request=request, patient_id=study.patient.patient_id,
            study_uid=study.study_instance_uid, series_uid=series.series_instance_uid,
            sop_uid=instance.sop_instance_uid, detail=detail or "instance deleted",
        )
        instance.delete()
        counts_refresh(series=series, study=study)
        transaction.on_commit(lambda: _blob_delete_if_unused(key))


def series_delete(*, series: Series, by: Any, request: Any = None, detail: str = "") -> None:
    for instance in list(series.instances.select_related("series__study__patient")):
        instance_delete(instance=instance, by=by, request=request,
                        detail=detail or "series deleted")
    if Series.objects.filter(pk=series.pk).exists():  # a series without instances
        study = series.study
        series.delete()
        counts_refresh(study=study)


def study_delete(*, study: Study, by: Any, request: Any = None, detail: str = "") -> None:
    for series in list(study.series.all()):
        series_delete(series=series, by=by, request=request, detail=detail or "study deleted")
    if Study.objects.filter(pk=study.pk).exists():  # a study without series
        audit_record(user=by, action="delete", request=request, patient_id=study.patient.patient_id,
                     study_uid=study.study_instance_uid, detail=detail or "study deleted")
        study.delete()
