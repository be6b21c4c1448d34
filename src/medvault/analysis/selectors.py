"""Analysis reads: which results and jobs a user may see, and their JSON representation.

Every representation carries ``disclaimer``: "decision support, not a diagnosis".
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from medvault.analysis.models import DISCLAIMER, AnalysisJob, AnalysisResult
from medvault.archive.models import Study

_RESULT_RELATED = ("instance__series__study__patient", "requested_by", "job")


def _visible_study_ids(user: Any) -> QuerySet[Any]:
    from medvault.archive.access import visible_to

    return visible_to(user).values("pk")


def results_visible_to(user: Any) -> QuerySet[AnalysisResult]:
    """Every result on a study the user may see, newest first (the history page)."""
    return (
        AnalysisResult.objects.filter(instance__series__study__in=_visible_study_ids(user))
        .select_related(*_RESULT_RELATED)
        .order_by("-created_at", "-id")
    )


def results_for_study(*, study: Study, user: Any = None) -> QuerySet[AnalysisResult]:
    """Results of every instance of one study, newest first."""
    results = AnalysisResult.objects.filter(instance__series__study=study)
    if user is not None:
        results = results.filter(instance__series__study__in=_visible_study_ids(user))
    return results.select_related(*_RESULT_RELATED).order_by("-created_at", "-id")


def result_visible(*, user: Any, result_id: int) -> AnalysisResult | None:
    if not 0 < result_id < 2**63:  # beyond any primary key (and SQLite's integer range)
        return None
    return results_visible_to(user).filter(pk=result_id).first()


def jobs_visible_to(user: Any) -> QuerySet[AnalysisJob]:
    return (
        AnalysisJob.objects.filter(instance__series__study__in=_visible_study_ids(user))
        .select_related("instance__series__study")
        .order_by("-created_at", "-id")
    )


# --- representation ------------------------------------------------------------------------
def job_as_json(job: AnalysisJob) -> dict[str, Any]:
    result_id = AnalysisResult.objects.filter(job_id=job.pk).values_list("id", flat=True).first()
    return {
        "id": job.pk,
        "sop_instance_uid": job.instance.sop_instance_uid,
        "model": job.model_name,
        "status": job.status,
        "trigger": job.trigger,
        "attempts": job.attempts,
        "error": job.error,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "result_id": result_id,
    }


def result_as_json(result: AnalysisResult, *, deidentified: bool = False) -> dict[str, Any]:
    """One result for the API and the pages.

    For researchers (``deidentified``) the patient is a pseudonym and the requesting
    user's name is left out.
    """
    instance = result.instance
    series = instance.series
    study = series.study
    patient = study.patient
    data: dict[str, Any] = {
        "id": result.pk,
        "job_id": result.job_id,
        "disclaimer": DISCLAIMER,
        "model": result.model_name,
        "model_version": result.model_version,
        "model_sha256": result.model_sha256,
        "refused": result.refused,
        "reason": result.reason,
        "call": result.call or None,
        "call_reason": result.call_reason,
        "label": result.label,
        "probabilities": result.probabilities,
        "model_card_url": model_card_url(result.model_name),
        "extra": result.extra,
        "heatmap_url": (
            f"/api/v1/analyses/{result.pk}/heatmap.png" if result.heatmap_key else None
        ),
        "heatmap_size": (
            [result.heatmap_width, result.heatmap_height] if result.heatmap_key else None
        ),
        "sop_instance_uid": instance.sop_instance_uid,
        "series_instance_uid": series.series_instance_uid,
        "study_instance_uid": study.study_instance_uid,
        "modality": series.modality,
        "timing_ms": {
            "queue_wait": round(result.queue_wait_ms, 1),
            "inference": round(result.inference_ms, 1),
            "total": round(result.total_ms, 1),
        },
        "created_at": result.created_at.isoformat() if result.created_at else None,
    }
    if deidentified:
        from medvault.accounts.deid import pseudonym

        data["patient_id"] = pseudonym(patient.patient_id, patient.issuer_of_patient_id)
        data["requested_by"] = None
    else:
        data["patient_id"] = patient.patient_id
        data["patient_name"] = patient.patient_name
        data["study_date"] = study.study_date.isoformat() if study.study_date else None
        data["requested_by"] = result.requested_by.get_username() if result.requested_by else None
    return data


def heatmap_blob_refs() -> Any:
    """(blob key, label) of every stored heat-map overlay, for ``medvault scrub``."""
    rows = AnalysisResult.objects.exclude(heatmap_key="").values_list("heatmap_key", "id")
    for key, result_id in rows.iterator():
        yield key, f"analysis result {result_id} heat-map"


# --- model cards ---------------------------------------------------------------------------
CARD_HEADLINE = ("missed_abnormal", "indeterminate_share", "refused_share", "accuracy",
                 "sensitivity", "specificity", "auroc", "ece")


def model_card_url(model_name: str) -> str | None:
    from medvault.core.ml import MODEL_NAMES

    return f"/models/{model_name}/" if model_name in MODEL_NAMES else None


def model_card(model_name: str) -> dict[str, Any] | None:
    """What a clinician needs to read a result: intended use, the call rule, internal and
    external figures with intervals, and known limits. None for an unknown or uninstalled
    model (the name is checked against the known names: never a path from the user)."""
    import json

    from medvault.analysis.conf import models_dir
    from medvault.core.ml import MODEL_NAMES

    if model_name not in MODEL_NAMES:
        return None
    path = models_dir() / f"{model_name}.json"
    if not path.is_file():
        return None
    card = json.loads(path.read_text())
    call = card.get("call") or {}
    figures: dict[str, Any] = {}
    for section, entry in (card.get("evaluation") or {}).items():
        for set_name, rep in entry.get("sets", {}).items():
            figures.setdefault(section, {})[set_name] = {
                "n": rep.get("n"),
                **{k: {"value": rep["metrics"].get(k), "ci95": rep.get("ci95", {}).get(k)}
                   for k in CARD_HEADLINE},
            }
    return {
        "name": card.get("name", model_name),
        "version": card.get("version", ""),
        "sha256": card.get("sha256", ""),
        "intended_use": card.get("intended_use", ""),
        "task": card.get("task", ""),
        "labels": card.get("labels", []),
        "call_rule": {k: call.get(k) for k in ("rule", "normal_below", "abnormal_at",
                                                "threshold_rule", "chosen_on")} if call else None,
        "near_ood": ({k: call["ood"].get(k) for k in ("method", "threshold", "threshold_rule",
                                                       "fitted_on")} if call.get("ood") else None),
        "figures": figures,
        "external_rule": (card.get("evaluation", {}).get("external") or {}).get("rule", ""),
        "known_limits": card.get("known_failure_modes", []),
        "dicom_input": card.get("input", {}).get("dicom", ""),
    }
