"""Analysis writes: enqueue jobs, claim them, run them, store results, export them.

The database is the queue: ``JOBS`` is the analysis kind of ``medvault.archive.jobs``'s
lease queue (a claim is one conditional UPDATE; a worker that dies leaves a lease that runs
out; failed attempts come back after a doubling backoff, at most ``MEDVAULT_JOB_MAX_ATTEMPTS``
times). Results are stored exactly once because ``AnalysisResult.job`` is unique: a late
second writer finds the row already there and only marks the job done.

Whatever else wants a stored result (similar-image search keeps its embedding) registers a
hook with :func:`register_result_hook`; analysis imports nothing above it.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone

from medvault.analysis import conf
from medvault.analysis.backends import AnalysisBackend, ModelUnavailable, model_available, models_available
from medvault.analysis.models import AnalysisJob, AnalysisResult, Call, JobTrigger
from medvault.analysis.overlay import overlay_png
from medvault.archive.blobstore import blob_store
from medvault.archive.jobs import JobState, LeaseQueue, Outcome, worker_identity
from medvault.archive.models import Instance
from medvault.archive.outcomes import StoreStatus
from medvault.archive.selectors import instance_dataset as archive_instance_dataset
from medvault.core.ml import MODEL_NAMES, model_applies

log = logging.getLogger(__name__)


# --- errors the API and UI turn into HTTP answers ------------------------------------------
class AnalysisError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status to answer with."""

    status = 400


class AnalysisNotFound(AnalysisError):
    status = 404


class AnalysisDenied(AnalysisError):
    status = 403


_UID_RE = re.compile(r"\A[0-9]+(\.[0-9]+)*\Z")


def is_uid(value: Any) -> bool:
    """A syntactically valid DICOM UID: digits and dots, at most 64 characters."""
    return isinstance(value, str) and len(value) <= 64 and bool(_UID_RE.match(value))


# --- the queue ----------------------------------------------------------------------------
JOBS: LeaseQueue[AnalysisJob] = LeaseQueue(
    AnalysisJob, order=("created_at", "id"), claim_time="started_at", finish_time="finished_at"
)

# --- results announced to other apps ----------------------------------------------------------
_result_hooks: list[Callable[[AnalysisResult, Any], None]] = []


def register_result_hook(fn: Callable[[AnalysisResult, Any], None]) -> None:
    """Call ``fn(result, output)`` after a job's result is first stored (not for duplicates).

    ``output`` is what the model returned (``embedding`` included). A hook runs in its own
    savepoint of the storing transaction; one that raises is logged and rolled back, and the
    result stands. Apps above analysis (retrieval) register in their ``AppConfig.ready``.
    """
    if fn not in _result_hooks:
        _result_hooks.append(fn)


def _result_hooks_run(result: AnalysisResult, output: Any) -> None:
    for hook in _result_hooks:
        try:
            with transaction.atomic():
                hook(result, output)
        except Exception:  # an extra (e.g. search) failing must not lose the result
            log.exception("result hook %s failed for job %s", getattr(hook, "__name__", hook), result.job_id)


def instance_dataset(instance: Instance) -> Any:
    """The stored instance as a pydicom Dataset (through the archive's selector)."""
    return archive_instance_dataset(instance=instance)


# --- enqueue -------------------------------------------------------------------------------
def job_enqueue(
    *,
    instance: Instance,
    model_name: str,
    requested_by: Any = None,
    trigger: str = JobTrigger.USER,
) -> AnalysisJob:
    """Queue ``model_name`` for ``instance``; an already pending job for the pair is reused."""
    pending = (
        AnalysisJob.objects.filter(
            instance=instance,
            model_name=model_name,
            status__in=[JobState.QUEUED, JobState.RUNNING],
        )
        .order_by("id")
        .first()
    )
    if pending is not None:
        return pending
    return AnalysisJob.objects.create(
        instance=instance,
        model_name=model_name,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        trigger=trigger,
    )


def instance_modality_body_part(instance: Instance) -> tuple[str, str]:
    series = instance.series
    modality = series.modality or ""
    body_part = series.body_part_examined or ""
    if not body_part:
        element = (instance.metadata or {}).get("00180015") or {}
        values = element.get("Value") if isinstance(element, dict) else None
        if values:
            body_part = str(values[0])
    return modality, body_part


def jobs_enqueue_for_instance(instance: Instance) -> list[AnalysisJob]:
    """The ingest hook: queue every installed model that applies to the new instance.

    Does nothing when ``MEDVAULT_AUTO_ANALYSE`` is off. Registered with
    ``medvault.archive.indexing.register_stored_hook`` in ``AnalysisConfig.ready``.
    """
    if not conf.auto_analyse():
        return []
    modality, body_part = instance_modality_body_part(instance)
    jobs = []
    for name in models_available():
        if model_applies(name, modality, body_part):
            jobs.append(
                job_enqueue(
                    instance=instance,
                    model_name=name,
                    requested_by=instance.uploaded_by,
                    trigger=JobTrigger.INGEST,
                )
            )
    return jobs


def stored_hook(instance: Instance) -> None:
    """Wrapper registered with the archive: a failure to enqueue never fails an ingest."""
    try:
        jobs_enqueue_for_instance(instance)
    except Exception:  # the image is stored; a missing job is logged, not raised
        log.exception("could not queue analysis for instance %s", instance.pk)


def analysis_request(
    *, user: Any, sop_instance_uid: str, model_name: str, request: Any = None
) -> AnalysisJob:
    """A user asks for an analysis ("Analyse" button, ``POST /api/v1/analyses``).

    Checks the ``analyse`` permission and that the user may see the study (an invisible
    instance is reported as not found), audits the request and queues the job.
    """
    from medvault.accounts.audit import audit_record
    from medvault.accounts.permissions import user_can
    from medvault.archive.access import visible_to

    if not isinstance(sop_instance_uid, str) or not sop_instance_uid.strip():
        raise AnalysisError("sop_instance_uid is required")
    if not is_uid(sop_instance_uid):
        raise AnalysisError("sop_instance_uid is not a DICOM UID (digits and dots, at most 64)")
    if not isinstance(model_name, str) or model_name not in MODEL_NAMES:
        raise AnalysisError(f"model must be one of: {', '.join(MODEL_NAMES)}")
    if not user_can(user, "analyse"):
        audit_record(
            user=user,
            action="analyse",
            outcome="denied",
            request=request,
            sop_uid=sop_instance_uid,
            detail=f"model={model_name}; no analyse permission",
        )
        raise AnalysisDenied("you may not request analyses")
    instance = (
        Instance.objects.select_related("series__study__patient")
        .filter(sop_instance_uid=sop_instance_uid, series__study__in=visible_to(user))
        .first()
    )
    if instance is None:
        audit_record(
            user=user,
            action="analyse",
            outcome="denied",
            request=request,
            sop_uid=sop_instance_uid,
            detail=f"model={model_name}; not found or not visible",
        )
        raise AnalysisNotFound("no such instance")
    if not model_available(model_name):
        raise AnalysisError(f"model {model_name!r} is not installed on this server")
    job = job_enqueue(instance=instance, model_name=model_name, requested_by=user)
    study = instance.series.study
    audit_record(
        user=user,
        action="analyse",
        request=request,
        patient_id=study.patient.patient_id,
        study_uid=study.study_instance_uid,
        series_uid=instance.series.series_instance_uid,
        sop_uid=instance.sop_instance_uid,
        detail=f"model={model_name}; job={job.pk}",
    )
    return job


# --- claim ----------------------------------------------------------------------------------
def job_claim(*, worker_id: str, lease: float | None = None) -> AnalysisJob | None:
    """Claim the oldest claimable job for ``worker_id``, or return None if there is none."""
    return JOBS.claim(worker_id=worker_id, lease=lease)


def job_release(*, job: AnalysisJob) -> bool:
    """Give a claimed job back to the queue (a worker shutting down before it started)."""
    return JOBS.release(job)


# --- run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    status: Outcome
    result: AnalysisResult | None
    error: str = ""


def _ms(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds() * 1000.0)


def _probabilities(raw: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in dict(raw or {}).items()}


def _call(output: Any) -> str:
    """The output's call, or "" (refused, or a backend/card without a call rule)."""
    call = getattr(output, "call", None) or ""
    if getattr(output, "refused", False) or call not in Call.values:
        return ""
    return str(call)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def result_store(*, job: AnalysisJob, output: Any, worker_id: str) -> tuple[AnalysisResult, bool]:
    """Store what the model said for ``job``; exactly one result per job.

    The heat-map blob is written (durably) before the row that points at it commits.
    Returns (result, created); ``created`` is False when another worker stored it first.
    """
    existing = AnalysisResult.objects.filter(job_id=job.pk).first()
    if existing is not None:
        _job_mark_done(job)
        return existing, False
    heatmap_key, width, height = "", None, None
    heatmap = getattr(output, "heatmap", None)
    if heatmap is not None and not getattr(output, "refused", False):
        heat = np.asarray(heatmap, dtype=np.float32)
        height, width = int(heat.shape[0]), int(heat.shape[1])
        heatmap_key = blob_store().put(overlay_png(heat))
    now = timezone.now()
    started = job.started_at or now
    with transaction.atomic():
        try:
            with transaction.atomic():
                result = AnalysisResult.objects.create(
                    job=job,
                    instance_id=job.instance_id,
                    model_name=getattr(output, "model_name", "") or job.model_name,
                    model_version=str(getattr(output, "model_version", "") or ""),
                    model_sha256=str(getattr(output, "model_sha256", "") or ""),
                    label=output.label,
                    probabilities=_probabilities(output.probabilities),
                    refused=bool(output.refused),
                    reason=str(getattr(output, "reason", "") or ""),
                    call=_call(output),
                    call_reason=str(getattr(output, "call_reason", "") or "")[:128],
                    heatmap_key=heatmap_key,
                    heatmap_width=width,
                    heatmap_height=height,
                    requested_by_id=job.requested_by_id,
                    queue_wait_ms=_ms(started - job.created_at),
                    inference_ms=float(getattr(output, "latency_ms", 0.0) or 0.0),
                    total_ms=_ms(now - job.created_at),
                    extra=_json_safe(dict(getattr(output, "extra", None) or {})),
                )
        except IntegrityError:
            # Another worker (whose lease we took over, or who took over ours) got there first.
            _job_mark_done(job)
            return AnalysisResult.objects.get(job_id=job.pk), False
        _result_hooks_run(result, output)
        _job_mark_done(job)
    return result, True


def _job_mark_done(job: AnalysisJob) -> None:
    # Whoever owns the claim now: the result is stored, so the job is done.
    JOBS.mark_done(job.pk)


def job_run(*, job: AnalysisJob, worker_id: str, backend: AnalysisBackend) -> JobOutcome:
    """Run one claimed job to its end: result stored, or the attempt recorded as failed."""
    try:
        dataset = instance_dataset(job.instance)
        output = backend.analyse(job.model_name, dataset)
    except ModelUnavailable as exc:
        return JobOutcome(job.pk, JOBS.retry(job, error=str(exc), permanent=True), None, str(exc))
    except Exception as exc:  # one bad image must not stop the worker; the error is kept
        log.exception("analysis job %s (%s) failed", job.pk, job.model_name)
        error = f"{type(exc).__name__}: {exc}"
        return JobOutcome(job.pk, JOBS.retry(job, error=error), None, error)
    result, created = result_store(job=job, output=output, worker_id=worker_id)
    if created and conf.results_as_dicom():
        from medvault.analysis.dicom_results import result_dicom_store_logged

        # The result as DICOM objects in its study (SR + heat-map), for PACS and viewers.
        result_dicom_store_logged(result=result)
    return JobOutcome(job.pk, Outcome.DONE if created else Outcome.DUPLICATE, result)


def job_run_next(*, worker_id: str, backend: AnalysisBackend) -> JobOutcome | None:
    """Claim and run one job; None when the queue has nothing claimable."""
    job = job_claim(worker_id=worker_id)
    if job is None:
        return None
    return job_run(job=job, worker_id=worker_id, backend=backend)


def jobs_drain(
    *, backend: AnalysisBackend, worker_id: str | None = None, limit: int = 1000
) -> list[JobOutcome]:
    """Run claimable jobs in this process until none is left (tests, ``worker --once``)."""
    wid = worker_id or worker_identity()
    outcomes = []
    for _ in range(limit):
        outcome = job_run_next(worker_id=wid, backend=backend)
        if outcome is None:
            break
        outcomes.append(outcome)
    return outcomes


# --- export --------------------------------------------------------------------------------
def _frame_for_display(ds: Any) -> tuple[np.ndarray, tuple[float, float] | None]:
    from pydicom.pixels.processing import apply_modality_lut

    pixels = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 1:
        pixels = apply_modality_lut(pixels, ds)
        centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if centre is not None and width is not None:
            centre = (
                centre[0] if hasattr(centre, "__len__") and not isinstance(centre, str) else centre
            )
            width = width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
            try:
                return pixels, (float(centre), float(width))
            except (TypeError, ValueError):
                return pixels, None
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            pixels = pixels.max() - pixels
    elif str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
        from pydicom.pixels.processing import convert_color_space

        pixels = convert_color_space(pixels, str(ds.PhotometricInterpretation), "RGB")
    return pixels, None


def result_export(*, result: AnalysisResult, user: Any, request: Any = None) -> Any:
    """Store a Secondary Capture of the image with the heat-map burned in, in the same
    study (new series), through the archive's ``instance_store``. Returns its StoreResult."""
    from pydicom.uid import generate_uid

    from medvault.accounts.audit import audit_record
    from medvault.analysis.dicom_results import heatmap_capture
    from medvault.archive.access import study_writable
    from medvault.archive.ingest import instance_store

    study = result.instance.series.study
    if user is not None and not study_writable(user, study):
        # Seeing a study (a share, or a technician's own upload elsewhere) is not writing
        # into it: an export is a write into the study's group.
        audit_record(
            user=user, action="export", outcome="denied", request=request,
            study_uid=study.study_instance_uid, sop_uid=result.instance.sop_instance_uid,
            detail=f"analysis result {result.pk}: the study is read-only for this user",
        )
        raise AnalysisDenied("this study is read-only for you (shared with you, or not in your group)")
    if not result.heatmap_key:
        raise AnalysisError("this result has no heat-map to export (the model refused the image)")
    instance = result.instance
    ds = instance_dataset(instance)
    sc = heatmap_capture(
        result=result, ref_dataset=ds, series_uid=generate_uid(), sop_uid=generate_uid(),
        series_number=9000 + (result.pk % 1000), instance_number=1,
    )
    buffer = io.BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    stored = instance_store(data=buffer.getvalue(), source="analysis", user=user, group=study.group)
    audit_record(
        user=user,
        action="export",
        request=request,
        outcome="ok" if stored.status in (StoreStatus.STORED, StoreStatus.DUPLICATE) else "error",
        patient_id=study.patient.patient_id,
        study_uid=study.study_instance_uid,
        series_uid=instance.series.series_instance_uid,
        sop_uid=instance.sop_instance_uid,
        detail=f"analysis result {result.pk} as secondary capture {stored.sop_instance_uid}",
    )
    return stored
