"""The call in the stored result and the API, and the model-card endpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medvault.analysis import services
from medvault.analysis.models import AnalysisJob, AnalysisResult

pytestmark = pytest.mark.django_db

MODELS = Path(__file__).resolve().parents[2] / "models"


def _output(**kw: Any) -> SimpleNamespace:
    base = dict(label="adenocarcinoma", probabilities={"adenocarcinoma": 0.6, "normal": 0.4},
                refused=False, reason="", heatmap=None, embedding=None, latency_ms=1.0,
                model_name="lung-ct", model_version="1", model_sha256="0" * 64, extra={},
                call="indeterminate", call_reason="a tumour cannot be excluded; needs a radiologist's read")
    base.update(kw)
    return SimpleNamespace(**base)


def _job(instance: Any, user: Any) -> AnalysisJob:
    return AnalysisJob.objects.create(instance=instance, model_name="lung-ct", requested_by=user,
                                      status="running")


def test_call_is_stored_and_served(client, ct_instance, clinician, auth_header, settings):
    settings.MEDVAULT_MODELS_DIR = MODELS
    result, created = services.result_store(job=_job(ct_instance, clinician), output=_output(),
                                            worker_id="t")
    assert created and result.call == "indeterminate"
    body = client.get(f"/api/v1/analyses/{result.pk}", **auth_header(clinician)).json()
    assert body["call"] == "indeterminate" and "radiologist" in body["call_reason"]
    assert body["label"] == "adenocarcinoma"
    assert body["model_card_url"] == "/models/lung-ct/"


def test_refused_and_unknown_calls_store_none(ct_instance, clinician):
    refused, _ = services.result_store(
        job=_job(ct_instance, clinician),
        output=_output(refused=True, label=None, probabilities={}, call="abnormal"), worker_id="t")
    assert refused.call == ""
    odd, _ = services.result_store(job=_job(ct_instance, clinician),
                                   output=_output(call="maybe"), worker_id="t")
    assert odd.call == ""
    legacy, _ = services.result_store(job=_job(ct_instance, clinician),
                                      output=_output(call=None), worker_id="t")
    assert legacy.call == "" and AnalysisResult.objects.count() == 3


def test_model_card_endpoint(client, clinician, auth_header, settings):
    settings.MEDVAULT_MODELS_DIR = MODELS
    card = client.get("/api/v1/models/lung-ct", **auth_header(clinician))
    assert card.status_code == 200
    data = card.json()
    assert "not a diagnosis" in data["intended_use"].lower() or "decision support" in data["intended_use"].lower()
    assert data["call_rule"]["normal_below"] <= 0.5 and data["near_ood"]["threshold"] > 0
    assert data["known_limits"] and "external" in data["figures"]
    assert data["external_rule"].startswith("Never trained")
    ext = data["figures"]["external"]["iqoth_nccd"]
    assert ext["missed_abnormal"]["ci95"][0] <= ext["missed_abnormal"]["value"]
    for bad in ("knee-xray", "domain", "lung-ct.json"):
        response = client.get(f"/api/v1/models/{bad}", **auth_header(clinician))
        assert response.status_code == 404 and "error" in response.json()
    # a path in the name never reaches the view
    assert client.get("/api/v1/models/..%2F..%2Fetc", **auth_header(clinician)).status_code == 404
    assert client.get("/api/v1/models/lung-ct").status_code in (401, 403)
    assert client.post("/api/v1/models/lung-ct", **auth_header(clinician)).status_code == 405
