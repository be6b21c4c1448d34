"""End to end with the shipped ONNX models: ingest a real image, run the worker, read the
stored result. Skipped (with the reason) until the models are in ``models/``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image

from medvault.analysis import services
from medvault.analysis.models import AnalysisJob, AnalysisResult
from medvault.archive.blobstore import blob_store
from medvault.archive.uploads import image_store

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MODELS = Path(settings.MEDVAULT_MODELS_DIR)
LUNG_LABELS = {"adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma", "normal"}
BRAIN_LABELS = {"glioma", "meningioma", "pituitary", "notumor"}


@pytest.fixture
def shipped_models(settings: Any) -> Path:
    for name in ("lung-ct", "brain-mri"):
        if not (MODELS / f"{name}.onnx").is_file():
            pytest.skip(f"models/{name}.onnx is not there yet (the ML helper ships it)")
    settings.MEDVAULT_MODELS_DIR = MODELS
    settings.MEDVAULT_AUTO_ANALYSE = True
    settings.MEDVAULT_ANALYSIS_BACKEND = "medvault.analysis.backends.OnnxBackend"
    return MODELS


def _ingest(path: Path, capture: Any, **fields: str) -> Any:
    with capture(execute=True):
        result = image_store(data=path.read_bytes(), source="test", path=path.name, **fields)
    assert result.status == "stored", result.reason
    return result.instance


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _same_as_direct(result: AnalysisResult, image: Path) -> None:
    """The stored answer (image wrapped as DICOM, stored, read back by the worker) is what the
    model says about the original file."""
    import numpy as np

    from medvault.core.ml import analyse, load_model

    direct = analyse(load_model(result.model_name, MODELS), np.asarray(Image.open(image)))
    assert direct.label == result.label
    # the call is stored as the model made it (abnormal / normal / indeterminate)
    assert direct.call and result.call == direct.call and result.call_reason == direct.call_reason
    for label, p in direct.probabilities.items():
        assert result.probabilities[label] == pytest.approx(p, abs=1e-3)


def _check_result(result: AnalysisResult, instance: Any, labels: set[str]) -> None:
    assert not result.refused, result.reason
    assert result.label in labels
    assert set(result.probabilities) == labels
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert len(result.model_sha256) == 64 and result.model_version
    card = json.loads((MODELS / f"{result.model_name}.json").read_text())
    assert result.model_sha256 == card.get("sha256", result.model_sha256)
    png = blob_store().get(result.heatmap_key)
    overlay = Image.open(io.BytesIO(png))
    assert "transparency" in overlay.info and overlay.size == (instance.columns, instance.rows)
    assert result.inference_ms > 0 and result.total_ms >= result.inference_ms / 1000


def test_chest_ct_png_is_analysed_on_ingest(
    shipped_models: Path, shared_data: Path, blob_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = _first(shared_data / "chest_ct" / "valid" / "normal", "*.png")
    instance = _ingest(
        image,
        django_capture_on_commit_callbacks,
        patient_id="E2E-CT",
        patient_name="End^ToEnd",
        modality="CT",
        body_part="CHEST",
    )
    [job] = AnalysisJob.objects.filter(instance=instance)
    assert job.model_name == "lung-ct"
    call_command("worker", "--once", "--concurrency", "1")
    job.refresh_from_db()
    assert job.status == "done", job.error
    result = AnalysisResult.objects.get(job=job)
    _check_result(result, instance, LUNG_LABELS)
    assert result.label == "normal"
    _same_as_direct(result, image)
    # ... and it exports as a Secondary Capture with the real heat-map burned in.
    exported = services.result_export(result=result, user=None)
    assert exported.status == "stored", exported.reason
    assert exported.instance.series.study_id == instance.series.study_id
    assert (exported.instance.rows, exported.instance.columns) == (instance.rows, instance.columns)


def test_brain_mri_jpeg_is_analysed_on_ingest(
    shipped_models: Path, shared_data: Path, blob_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = _first(shared_data / "brain_mri" / "train" / "glioma", "*.jpg")
    instance = _ingest(
        image,
        django_capture_on_commit_callbacks,
        patient_id="E2E-MR",
        patient_name="End^ToEnd",
        modality="MR",
        body_part="BRAIN",
    )
    [job] = AnalysisJob.objects.filter(instance=instance)
    assert job.model_name == "brain-mri"
    call_command("worker", "--once", "--concurrency", "1")
    result = AnalysisResult.objects.get(job__instance=instance)
    _check_result(result, instance, BRAIN_LABELS)
    assert result.label == "glioma" and result.extra.get("tumour_detected") is True
    assert result.call == "abnormal"
    _same_as_direct(result, image)


def test_brain_model_refuses_a_chest_ct(
    shipped_models: Path, shared_data: Path, blob_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = _first(shared_data / "chest_ct" / "valid" / "adenocarcinoma", "*.png")
    instance = _ingest(
        image,
        django_capture_on_commit_callbacks,
        patient_id="E2E-OOD",
        patient_name="End^ToEnd",
        modality="CT",
        body_part="CHEST",
    )
    job = services.job_enqueue(instance=instance, model_name="brain-mri")
    call_command("worker", "--once", "--concurrency", "1")
    result = AnalysisResult.objects.get(job=job)
    assert result.refused and result.reason and result.label is None
    assert result.heatmap_key == "" and result.call == ""


@pytest.mark.parametrize(
    "label", ["adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma"]
)
def test_greyscale_chest_ct_upload_gets_the_same_answer_as_the_file(
    label: str,
    shipped_models: Path,
    shared_data: Path,
    blob_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Regression: an 8-bit grey PNG stored as a CT Secondary Capture was HU-windowed and
    refused; through upload -> worker it must get what the model says about the file."""
    candidates = sorted((shared_data / "chest_ct" / "valid" / label).glob("*.png"))
    image = next(p for p in candidates if Image.open(p).mode == "L")
    instance = _ingest(
        image,
        django_capture_on_commit_callbacks,
        patient_id="E2E-GREY",
        patient_name="End^ToEnd",
        modality="CT",
        body_part="CHEST",
    )
    call_command("worker", "--once", "--concurrency", "1")
    result = AnalysisResult.objects.get(job__instance=instance)
    _check_result(result, instance, LUNG_LABELS)
    _same_as_direct(result, image)
