"""Ingest queues the models that apply, whichever way the image arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medvault.analysis.models import AnalysisJob, JobTrigger
from medvault.archive.ingest import instance_store
from medvault.archive.uploads import image_store

from . import helpers

pytestmark = pytest.mark.django_db


@pytest.fixture
def auto(settings: Any, blob_dir: Path, models_dir: Path, shared_data: Path) -> Any:
    settings.MEDVAULT_AUTO_ANALYSE = True
    return settings


def _ingest(data: bytes, capture: Any, **kwargs: Any) -> Any:
    with capture(execute=True):
        result = instance_store(data=data, source="test", **kwargs)
    assert result.status == "stored", result.reason
    return result.instance


def test_chest_ct_gets_a_lung_job(
    auto: Any, django_capture_on_commit_callbacks: Any, clinician: Any
) -> None:
    instance = _ingest(
        helpers.dicom_bytes(helpers.CT_SMALL, body_part="CHEST"),
        django_capture_on_commit_callbacks,
        user=clinician,
    )
    [job] = AnalysisJob.objects.filter(instance=instance)
    assert job.model_name == "lung-ct" and job.status == "queued"
    assert job.trigger == JobTrigger.INGEST and job.requested_by == clinician


def test_brain_mr_gets_a_brain_job(auto: Any, django_capture_on_commit_callbacks: Any) -> None:
    instance = _ingest(
        helpers.dicom_bytes(helpers.MR_SMALL, body_part="BRAIN"), django_capture_on_commit_callbacks
    )
    assert list(
        AnalysisJob.objects.filter(instance=instance).values_list("model_name", flat=True)
    ) == ["brain-mri"]


def test_other_body_parts_get_no_job(auto: Any, django_capture_on_commit_callbacks: Any) -> None:
    _ingest(
        helpers.dicom_bytes(helpers.CT_SMALL, body_part="KNEE"), django_capture_on_commit_callbacks
    )
    _ingest(
        helpers.dicom_bytes(helpers.MR_SMALL, body_part="CHEST"), django_capture_on_commit_callbacks
    )
    assert not AnalysisJob.objects.exists()


def test_png_upload_of_a_chest_ct_gets_a_lung_job(
    auto: Any, django_capture_on_commit_callbacks: Any, shared_data: Path
) -> None:
    png = next((shared_data / "chest_ct" / "valid" / "adenocarcinoma").glob("*.png")).read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        result = image_store(
            data=png,
            patient_id="P-PNG",
            patient_name="Test^Png",
            modality="CT",
            body_part="CHEST",
            source="test",
        )
    assert result.status == "stored", result.reason
    assert list(
        AnalysisJob.objects.filter(instance=result.instance).values_list("model_name", flat=True)
    ) == ["lung-ct"]


def test_setting_turns_auto_analysis_off(
    auto: Any, django_capture_on_commit_callbacks: Any
) -> None:
    auto.MEDVAULT_AUTO_ANALYSE = False
    _ingest(
        helpers.dicom_bytes(helpers.CT_SMALL, body_part="CHEST"), django_capture_on_commit_callbacks
    )
    assert not AnalysisJob.objects.exists()


def test_models_not_installed_are_not_queued(
    auto: Any, models_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    (models_dir / "lung-ct.onnx").unlink()
    _ingest(
        helpers.dicom_bytes(helpers.CT_SMALL, body_part="CHEST"), django_capture_on_commit_callbacks
    )
    assert not AnalysisJob.objects.exists()


def test_duplicate_ingest_queues_nothing_new(
    auto: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = helpers.dicom_bytes(helpers.CT_SMALL, body_part="CHEST")
    _ingest(data, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        again = instance_store(data=data, source="test")
    assert again.status == "duplicate"
    assert AnalysisJob.objects.count() == 1
