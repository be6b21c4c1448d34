"""The database queue: claims, leases, retries and exactly-once results (in one process)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from medvault.analysis import services
from medvault.analysis.models import AnalysisJob, AnalysisResult
from medvault.archive.blobstore import blob_store
from medvault.archive.jobs import JobState, Outcome

from .fake_backend import FailingBackend, FakeBackend, RefusingBackend

pytestmark = pytest.mark.django_db


def _expire(job: AnalysisJob) -> None:
    AnalysisJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_claim_takes_each_job_once(ct_instance: Any) -> None:
    job = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    first = services.job_claim(worker_id="w1")
    assert first is not None and first.pk == job.pk
    assert first.status == JobState.RUNNING and first.worker_id == "w1" and first.attempts == 1
    assert first.lease_until > timezone.now()
    # The lease is live: nobody else gets it.
    assert services.job_claim(worker_id="w2") is None


def test_enqueue_reuses_a_pending_job(ct_instance: Any) -> None:
    a = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    b = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    c = services.job_enqueue(instance=ct_instance, model_name="brain-mri")
    assert a.pk == b.pk and c.pk != a.pk
    assert AnalysisJob.objects.count() == 2


def test_expired_lease_is_claimed_again(ct_instance: Any) -> None:
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    job = services.job_claim(worker_id="dead-worker")
    _expire(job)
    again = services.job_claim(worker_id="w2")
    assert again is not None and again.pk == job.pk
    assert again.worker_id == "w2" and again.attempts == 2


def test_two_writers_store_one_result(ct_instance: Any, blob_dir: Any) -> None:
    """A slow worker whose lease was taken over finishes late: still one result row."""
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    slow = services.job_claim(worker_id="slow")
    _expire(slow)
    fast = services.job_claim(worker_id="fast")
    backend = FakeBackend()
    out_fast = services.job_run(job=fast, worker_id="fast", backend=backend)
    out_slow = services.job_run(job=slow, worker_id="slow", backend=backend)
    assert out_fast.status is Outcome.DONE and out_slow.status is Outcome.DUPLICATE
    assert AnalysisResult.objects.filter(job_id=slow.pk).count() == 1
    assert out_slow.result.pk == out_fast.result.pk
    assert AnalysisJob.objects.get(pk=slow.pk).status == JobState.DONE


def test_result_records_what_the_model_said(
    ct_instance: Any, clinician: Any, blob_dir: Any
) -> None:
    job = services.job_enqueue(instance=ct_instance, model_name="lung-ct", requested_by=clinician)
    [outcome] = services.jobs_drain(backend=FakeBackend())
    result = AnalysisResult.objects.get(job=job)
    assert outcome.status is Outcome.DONE and outcome.result.pk == result.pk
    assert result.label == "adenocarcinoma" and not result.refused
    assert result.model_version == "fake-1" and result.model_sha256 == "0" * 64
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.requested_by == clinician
    assert result.extra == {"tumour_detected": True}
    assert (result.heatmap_width, result.heatmap_height) == (ct_instance.columns, ct_instance.rows)
    assert result.total_ms >= result.queue_wait_ms >= 0
    # The overlay is a real transparent PNG of the image's size, in the blob store.
    import io

    from PIL import Image

    png = blob_store().get(result.heatmap_key)
    image = Image.open(io.BytesIO(png))
    assert "transparency" in image.info and image.size == (ct_instance.columns, ct_instance.rows)
    job.refresh_from_db()
    assert job.status == JobState.DONE and job.finished_at is not None and job.lease_until is None


def test_refused_result_has_no_heatmap(ct_instance: Any, blob_dir: Any) -> None:
    services.job_enqueue(instance=ct_instance, model_name="brain-mri")
    services.jobs_drain(backend=RefusingBackend())
    result = AnalysisResult.objects.get()
    assert result.refused and result.reason == "not a chest CT"
    assert result.label is None and result.heatmap_key == ""


def test_failures_retry_then_fail(ct_instance: Any, settings: Any) -> None:
    settings.MEDVAULT_JOB_MAX_ATTEMPTS = 2
    settings.MEDVAULT_JOB_RETRY_SECONDS = 0  # no backoff: the drain takes the retry at once
    job = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    outcomes = services.jobs_drain(backend=FailingBackend())
    assert [o.status for o in outcomes] == [Outcome.RETRY, Outcome.FAILED]
    job.refresh_from_db()
    assert job.status == JobState.FAILED and job.attempts == 2
    assert "the fake model broke" in job.error
    assert not AnalysisResult.objects.exists()


def test_lease_expired_after_last_attempt_fails_the_job(ct_instance: Any, settings: Any) -> None:
    settings.MEDVAULT_JOB_MAX_ATTEMPTS = 1
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    job = services.job_claim(worker_id="dies")
    _expire(job)
    assert services.job_claim(worker_id="w2") is None
    job.refresh_from_db()
    assert job.status == JobState.FAILED and "gave up after 1 attempts" in job.error


def test_missing_model_fails_without_retry(ct_instance: Any, tmp_path: Any, settings: Any) -> None:
    from medvault.analysis.backends import OnnxBackend

    settings.MEDVAULT_MODELS_DIR = tmp_path  # empty: nothing installed
    job = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    [outcome] = services.jobs_drain(backend=OnnxBackend())
    job.refresh_from_db()
    assert outcome.status is Outcome.FAILED and job.status == JobState.FAILED and job.attempts == 1
    assert "not installed" in job.error


def test_release_puts_the_job_back(ct_instance: Any) -> None:
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    job = services.job_claim(worker_id="w1")
    assert services.job_release(job=job)
    job.refresh_from_db()
    assert job.status == JobState.QUEUED and job.attempts == 0 and job.worker_id == ""
    assert services.job_claim(worker_id="w2").pk == job.pk


def test_result_hooks_get_each_new_result_once(ct_instance: Any, blob_dir: Any, monkeypatch: Any) -> None:
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(services, "_result_hooks", [lambda result, output: calls.append((result.pk, output.label))])
    job = services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    services.jobs_drain(backend=FakeBackend())
    [result] = AnalysisResult.objects.filter(job=job)
    assert calls == [(result.pk, "adenocarcinoma")]
    # A second attempt of the same job finds the result stored: no second announcement.
    AnalysisJob.objects.filter(pk=job.pk).update(status=JobState.QUEUED, lease_until=None)
    [again] = services.jobs_drain(backend=FakeBackend())
    assert again.status is Outcome.DUPLICATE and len(calls) == 1


def test_a_failing_result_hook_does_not_lose_the_result(
    ct_instance: Any, blob_dir: Any, monkeypatch: Any
) -> None:
    def broken(result: Any, output: Any) -> None:
        raise RuntimeError("search is down")

    monkeypatch.setattr(services, "_result_hooks", [broken])
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    [outcome] = services.jobs_drain(backend=FakeBackend())
    assert outcome.status is Outcome.DONE and AnalysisResult.objects.count() == 1


def test_scrub_counts_heatmaps_as_referenced(ct_instance: Any, blob_dir: Any) -> None:
    from medvault.archive.scrub import blob_scrub

    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    services.jobs_drain(backend=FakeBackend())
    key = AnalysisResult.objects.get().heatmap_key
    report = blob_scrub(repair=True, min_age_s=0.0)
    assert report["orphans"] == [] and report["deleted"] == []
    # The image, the heat-map overlay, and the result as DICOM (report + Secondary Capture).
    assert report["blobs_checked"] == 4 and blob_store().exists(key)


def test_worker_stores_the_embedding_for_similar_image_search(
    ct_instance: Any, blob_dir: Any
) -> None:
    from medvault.retrieval.models import Embedding

    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    services.jobs_drain(backend=FakeBackend())
    [embedding] = Embedding.objects.filter(instance=ct_instance)
    assert embedding.model_name == "lung-ct" and embedding.model_version == "fake-1"
    assert embedding.label == "adenocarcinoma"


def test_refused_images_get_no_embedding(ct_instance: Any, blob_dir: Any) -> None:
    from medvault.retrieval.models import Embedding

    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    services.jobs_drain(backend=RefusingBackend())
    assert not Embedding.objects.filter(instance=ct_instance).exists()


def test_worker_waits_out_a_database_error(
    ct_instance: Any, blob_dir: Any, monkeypatch: Any, settings: Any
) -> None:
    import threading

    from django.db import OperationalError

    from medvault.analysis import worker

    settings.MEDVAULT_WORKER_POLL_MS = 10
    services.job_enqueue(instance=ct_instance, model_name="lung-ct")
    real_claim, failures = services.job_claim, []

    def flaky_claim(**kwargs: Any) -> Any:
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_claim(**kwargs)

    monkeypatch.setattr(services, "job_claim", flaky_claim)
    stats = worker.worker_run(stop=threading.Event(), once=True, backend=FakeBackend())
    assert len(failures) == 2 and stats.done == 1
    assert AnalysisResult.objects.count() == 1
