"""The analysis JSON API: authentication, permissions, visibility, results, heat-map, export."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medvault.accounts.models import AuditRecord
from medvault.analysis import services
from medvault.analysis.models import DISCLAIMER, AnalysisJob, AnalysisResult

from .fake_backend import FakeBackend

pytestmark = pytest.mark.django_db

URL = "/api/v1/analyses"


def _post(client: Any, body: Any, headers: dict[str, str], url: str = URL) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


@pytest.fixture
def analysed(ct_instance: Any, clinician: Any, models_dir: Path) -> AnalysisResult:
    services.job_enqueue(instance=ct_instance, model_name="lung-ct", requested_by=clinician)
    [outcome] = services.jobs_drain(backend=FakeBackend())
    return outcome.result


def test_requires_authentication(client: Any, ct_instance: Any) -> None:
    for response in (
        _post(client, {"sop_instance_uid": ct_instance.sop_instance_uid, "model": "lung-ct"}, {}),
        client.get(URL, {"instance": ct_instance.sop_instance_uid}),
        client.get(f"{URL}/1/heatmap.png"),
        client.post(f"{URL}/1/export"),
    ):
        assert response.status_code == 401
        assert "error" in response.json() and response["WWW-Authenticate"]
    bad_token = _post(client, {}, {"HTTP_AUTHORIZATION": "Token mv_not-a-real-token"})
    assert bad_token.status_code == 401


def test_clinician_queues_an_analysis(
    client: Any, ct_instance: Any, clinician: Any, auth_header: Any, models_dir: Path
) -> None:
    uid = ct_instance.sop_instance_uid
    response = _post(client, {"sop_instance_uid": uid, "model": "lung-ct"}, auth_header(clinician))
    assert response.status_code == 202, response.content
    body = response.json()
    job = AnalysisJob.objects.get(pk=body["job"]["id"])
    assert (
        job.instance == ct_instance
        and job.model_name == "lung-ct"
        and job.requested_by == clinician
    )
    assert body["job"]["status"] == "queued" and body["disclaimer"] == DISCLAIMER
    assert AuditRecord.objects.filter(
        action="analyse", outcome="ok", sop_uid=uid, user=clinician
    ).exists()
    # Pressing again while it waits returns the same job instead of queueing twice.
    again = _post(client, {"sop_instance_uid": uid, "model": "lung-ct"}, auth_header(clinician))
    assert again.status_code == 202 and again.json()["job"]["id"] == job.pk


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "JSON object"),
        ({"model": "lung-ct"}, 400, "sop_instance_uid is required"),
        ({"sop_instance_uid": "1.2.3", "model": "knee-xray"}, 400, "model must be one of"),
        ({"sop_instance_uid": "1.2.3.4.5.6.7", "model": "lung-ct"}, 404, "no such instance"),
        ({"sop_instance_uid": "../../etc/passwd", "model": "lung-ct"}, 400, "not a DICOM UID"),
        ({"sop_instance_uid": "1.2\u0000.3", "model": "lung-ct"}, 400, "not a DICOM UID"),
        ({"sop_instance_uid": "1." * 40 + "1", "model": "lung-ct"}, 400, "not a DICOM UID"),
        ({"sop_instance_uid": 12345, "model": "lung-ct"}, 400, "sop_instance_uid is required"),
    ],
)
def test_bad_requests_get_clear_errors(
    client: Any,
    clinician: Any,
    auth_header: Any,
    models_dir: Path,
    body: Any,
    status: int,
    message: str,
) -> None:
    response = _post(client, body, auth_header(clinician))
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not AnalysisJob.objects.exists()


def test_model_not_installed_is_a_clear_error(
    client: Any, ct_instance: Any, clinician: Any, auth_header: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDVAULT_MODELS_DIR = tmp_path
    response = _post(
        client,
        {"sop_instance_uid": ct_instance.sop_instance_uid, "model": "lung-ct"},
        auth_header(clinician),
    )
    assert response.status_code == 400 and "not installed" in response.json()["error"]


def test_other_groups_cannot_see_or_analyse(
    client: Any,
    ct_instance: Any,
    other_clinician: Any,
    auth_header: Any,
    models_dir: Path,
    analysed: Any,
) -> None:
    headers = auth_header(other_clinician)
    uid = ct_instance.sop_instance_uid
    response = _post(client, {"sop_instance_uid": uid, "model": "lung-ct"}, headers)
    assert response.status_code == 404
    assert AuditRecord.objects.filter(
        action="analyse", outcome="denied", user=other_clinician
    ).exists()
    study_uid = ct_instance.series.study.study_instance_uid
    assert client.get(URL, {"study": study_uid}, **headers).status_code == 404
    assert client.get(URL, {"instance": uid}, **headers).status_code == 404
    assert client.get(URL, {"job": analysed.job_id}, **headers).status_code == 404
    assert client.get(f"{URL}/{analysed.pk}", **headers).status_code == 404
    assert client.get(f"{URL}/{analysed.pk}/heatmap.png", **headers).status_code == 404
    assert client.post(f"{URL}/{analysed.pk}/export", **headers).status_code == 404
    # Without a filter they get an empty list, not someone else's results.
    listing = client.get(URL, **headers).json()
    assert listing["results"] == [] and listing["jobs"] == []


def test_researcher_may_read_deidentified_but_not_request(
    client: Any, ct_instance: Any, researcher: Any, auth_header: Any, analysed: Any
) -> None:
    headers = auth_header(researcher)
    response = _post(
        client, {"sop_instance_uid": ct_instance.sop_instance_uid, "model": "lung-ct"}, headers
    )
    assert response.status_code == 403
    from medvault.web.uid_middleware import pseudonym_issue

    study_uid = ct_instance.series.study.study_instance_uid
    body = client.get(URL, {"study": pseudonym_issue(study_uid)}, **headers).json()
    assert study_uid not in json.dumps(body)
    [result] = body["results"]
    patient = ct_instance.series.study.patient
    assert result["label"] == "adenocarcinoma"
    assert result["patient_id"].startswith("ANON-") and result["patient_id"] != patient.patient_id
    assert "patient_name" not in result and result["requested_by"] is None
    assert patient.patient_id not in json.dumps(body)


def test_results_by_job_instance_and_study(
    client: Any, ct_instance: Any, clinician: Any, auth_header: Any, analysed: Any
) -> None:
    headers = auth_header(clinician)
    for params in (
        {"job": analysed.job_id},
        {"instance": ct_instance.sop_instance_uid},
        {"study": ct_instance.series.study.study_instance_uid},
    ):
        body = client.get(URL, params, **headers).json()
        assert body["disclaimer"] == DISCLAIMER
        [result] = body["results"]
        [job] = body["jobs"]
        assert job["status"] == "done" and job["result_id"] == result["id"] == analysed.pk
        assert result["disclaimer"] == DISCLAIMER
        assert result["label"] == "adenocarcinoma" and result["refused"] is False
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
        assert result["model_version"] == "fake-1" and result["model_sha256"] == "0" * 64
        assert result["heatmap_url"] == f"{URL}/{analysed.pk}/heatmap.png"
        assert result["requested_by"] == clinician.username
        assert result["sop_instance_uid"] == ct_instance.sop_instance_uid
    assert client.get(URL, {"job": "abc"}, **headers).status_code == 400
    for bad in ({"study": "1.2\x00.3"}, {"instance": "x' OR 1=1 --"}, {"study": "9" * 65}):
        response = client.get(URL, bad, **headers)
        assert response.status_code == 400 and response.json()["error"]
    assert client.get(URL, {"job": "999999"}, **headers).status_code == 404
    assert client.get(URL, {"job": "²"}, **headers).status_code == 400
    assert client.get(URL, {"job": "9" * 30}, **headers).status_code == 400
    huge = "9" * 30
    for path in (f"{URL}/{huge}", f"{URL}/{huge}/heatmap.png"):
        assert client.get(path, **headers).status_code == 404
    detail = client.get(f"{URL}/{analysed.pk}", **headers).json()
    assert detail["id"] == analysed.pk and detail["disclaimer"] == DISCLAIMER
    assert client.delete(URL, **headers).status_code == 405


def test_heatmap_is_an_overlay_png_of_the_image_size(
    client: Any, ct_instance: Any, clinician: Any, auth_header: Any, analysed: Any
) -> None:
    response = client.get(f"{URL}/{analysed.pk}/heatmap.png", **auth_header(clinician))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and "transparency" in image.info
    assert image.size == (ct_instance.columns, ct_instance.rows)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    # Transparent where the model did not look (lower right), opaque-ish at the hot spot.
    rows, columns = alpha.shape
    assert alpha[rows * 3 // 4, columns * 3 // 4] == 0
    assert alpha[rows // 4, columns // 4] > 100


def test_export_stores_a_secondary_capture_in_the_same_study(
    client: Any, ct_instance: Any, clinician: Any, auth_header: Any, analysed: Any
) -> None:
    from medvault.archive.models import Instance
    from medvault.archive.selectors import instance_dataset

    response = client.post(f"{URL}/{analysed.pk}/export", **auth_header(clinician))
    assert response.status_code == 201, response.content
    body = response.json()
    exported = Instance.objects.get(sop_instance_uid=body["sop_instance_uid"])
    assert exported.series.study_id == ct_instance.series.study_id
    assert exported.series_id != ct_instance.series_id
    ds = instance_dataset(instance=exported)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    assert ds.BurnedInAnnotation == "YES" and ds.PhotometricInterpretation == "RGB"
    assert "not a diagnosis" in ds.ImageComments
    assert (ds.Rows, ds.Columns) == (ct_instance.rows, ct_instance.columns)
    pixels = ds.pixel_array
    rows, columns = pixels.shape[:2]
    hot = pixels[rows // 4, columns // 4]
    cold = pixels[rows * 3 // 4, columns * 3 // 4]
    assert hot[0] > hot[2] + 50  # the hot spot is burned in red
    assert cold[0] == cold[1] == cold[2]  # elsewhere the grey image is untouched
    assert AuditRecord.objects.filter(action="export", outcome="ok", user=clinician).exists()


def test_technician_may_not_export(
    client: Any, technician: Any, group_a: Any, auth_header: Any, models_dir: Path, ct_dicom: bytes
) -> None:
    from . import helpers

    own = helpers.store(ct_dicom, group=group_a, user=technician)  # technicians see their uploads
    services.job_enqueue(instance=own, model_name="lung-ct")
    [outcome] = services.jobs_drain(backend=FakeBackend())
    headers = auth_header(technician)
    assert client.get(f"{URL}/{outcome.result.pk}", **headers).status_code == 200
    response = client.post(f"{URL}/{outcome.result.pk}/export", **headers)
    assert response.status_code == 403 and "may not" in response.json()["error"]
    assert AuditRecord.objects.filter(action="export", outcome="denied", user=technician).exists()
    request = _post(client, {"sop_instance_uid": own.sop_instance_uid, "model": "lung-ct"}, headers)
    assert request.status_code == 403


def test_export_from_the_command_line(analysed: Any, ct_instance: Any, clinician: Any) -> None:
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("analysis_export", str(analysed.pk), "--user", clinician.username, stdout=out)
    body = json.loads(out.getvalue())
    assert body["status"] == "stored" and body["disclaimer"] == DISCLAIMER
    assert body["study_instance_uid"] == ct_instance.series.study.study_instance_uid
    with pytest.raises(CommandError, match="no analysis result"):
        call_command("analysis_export", "999999")
