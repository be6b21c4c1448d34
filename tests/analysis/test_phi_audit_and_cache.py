"""Issue 13, finding 10 and "Caching": every response that carries patient data writes an
audit row and is sent ``Cache-Control: private, no-store`` (a cached PHI image outlived a
revoked share for a day)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medvault.accounts.models import AuditRecord
from medvault.analysis import services
from medvault.analysis.models import AnalysisResult

from .fake_backend import FakeBackend

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed(ct_instance: Any, clinician: Any, models_dir: Path) -> AnalysisResult:
    services.job_enqueue(instance=ct_instance, model_name="lung-ct", requested_by=clinician)
    [outcome] = services.jobs_drain(backend=FakeBackend())
    return outcome.result


def _audited(since: int, **filters: Any) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(pk__gt=since, outcome="ok", **filters))


def _last() -> int:
    return AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _no_store(response: Any) -> None:
    cache = response.get("Cache-Control", "")
    assert "no-store" in cache and "private" in cache and "max-age" not in cache, cache


def test_analysis_list_unfiltered_is_audited(client: Any, analysed: Any, clinician: Any, auth_header: Any) -> None:
    mark = _last()
    response = client.get("/api/v1/analyses", **auth_header(clinician))
    assert response.status_code == 200 and response.json()["results"]
    assert _audited(mark, action="view", username="dr-a")
    _no_store(response)


def test_analysis_detail_is_audited_with_its_uids(client: Any, analysed: Any, clinician: Any,
                                                  auth_header: Any, ct_instance: Any) -> None:
    mark = _last()
    response = client.get(f"/api/v1/analyses/{analysed.pk}", **auth_header(clinician))
    assert response.status_code == 200
    [record] = _audited(mark, action="view")
    assert record.sop_uid == ct_instance.sop_instance_uid
    assert record.patient_id == ct_instance.series.study.patient.patient_id
    _no_store(response)


def test_heatmap_is_audited_and_not_cached(client: Any, analysed: Any, clinician: Any,
                                            auth_header: Any, ct_instance: Any) -> None:
    mark = _last()
    response = client.get(f"/api/v1/analyses/{analysed.pk}/heatmap.png", **auth_header(clinician))
    assert response.status_code == 200
    assert [r.sop_uid for r in _audited(mark, action="view")] == [ct_instance.sop_instance_uid]
    _no_store(response)


def test_similar_thumbnail_is_audited_and_not_cached(client: Any, ct_instance: Any, clinician: Any) -> None:
    client.force_login(clinician)
    mark = _last()
    response = client.get(f"/api/v1/similar/{ct_instance.sop_instance_uid}/thumbnail.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert [r.sop_uid for r in _audited(mark, action="view")] == [ct_instance.sop_instance_uid]
    _no_store(response)


def test_phi_images_and_pages_are_not_cached(client: Any, ct_instance: Any, clinician: Any) -> None:
    client.force_login(clinician)
    study = ct_instance.series.study
    for url in (
        f"/frames/{ct_instance.sop_instance_uid}/0.png",
        f"/series/{ct_instance.series.series_instance_uid}/thumbnail.png",
        f"/studies/{study.study_instance_uid}/",
        "/studies/",
        f"/dicomweb/studies/{study.study_instance_uid}/series/{ct_instance.series.series_instance_uid}"
        f"/instances/{ct_instance.sop_instance_uid}/rendered",
        f"/dicomweb/studies/{study.study_instance_uid}/metadata",
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        _no_store(response)
