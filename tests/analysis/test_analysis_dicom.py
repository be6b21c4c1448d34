"""Analysis results as DICOM: a Comprehensive SR and a heat-map Secondary Capture in the
study, read back with pydicom and highdicom, found by QIDO, only for who may see the study,
and never overwritten by a re-analysis."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medvault.analysis import services
from medvault.analysis.dicom_results import StoredObjects, result_dicom_store, result_dicom_uids
from medvault.analysis.models import DISCLAIMER, AnalysisResult
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_part10_bytes

from .fake_backend import FakeBackend, FakeOutput, RefusingBackend

pytestmark = pytest.mark.django_db

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


class CallingBackend(FakeBackend):
    """The fake model with a call (issue 12) and a version of our choosing."""

    version = "fake-2"

    def analyse(self, model_name: str, dataset: Any) -> FakeOutput:
        output = super().analyse(model_name, dataset)
        output.model_version = self.version
        output.extra = {"call": "abnormal"}
        output.call = "abnormal"  # type: ignore[attr-defined]
        return output


def _analyse(instance: Any, user: Any, backend: Any) -> AnalysisResult:
    services.job_enqueue(instance=instance, model_name="lung-ct", requested_by=user)
    [outcome] = services.jobs_drain(backend=backend)
    assert outcome.status == "done", outcome
    return outcome.result


def _read(instance: Instance) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(instance_part10_bytes(instance=instance)))


def _items(sr: pydicom.Dataset) -> dict[str, Any]:
    """Content items of the report's root container by concept meaning."""
    out: dict[str, Any] = {}
    for item in sr.ContentSequence:
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT":
            out[meaning] = item.TextValue
        elif item.ValueType == "CODE":
            out[meaning] = item.ConceptCodeSequence[0]
        elif item.ValueType == "NUM":
            out[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "IMAGE":
            out[meaning] = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return out


def _ai_instances(study: Any, sop_class: str) -> list[Instance]:
    return list(Instance.objects.filter(series__study=study, sop_class_uid=sop_class).order_by("instance_number"))


def test_result_is_stored_as_sr_and_heatmap(ct_instance: Any, clinician: Any, models_dir: Path) -> None:
    result = _analyse(ct_instance, clinician, FakeBackend())
    study = ct_instance.series.study
    [sr_row] = _ai_instances(study, SR_CLASS)
    [sc_row] = _ai_instances(study, SC_CLASS)
    assert sr_row.series.modality == "SR" and sr_row.series.series_description == "MedVault AI: lung-ct"
    assert sc_row.series_id != sr_row.series_id != ct_instance.series_id
    assert result_dicom_uids(result) == StoredObjects(sr_row.sop_instance_uid, sc_row.sop_instance_uid)

    sr = _read(sr_row)
    original = _read(ct_instance)
    assert (sr.StudyInstanceUID, sr.PatientID, sr.PatientName) == (
        original.StudyInstanceUID, original.PatientID, original.PatientName)
    assert sr.Modality == "SR" and sr.CompletionFlag == "COMPLETE"
    items = _items(sr)
    assert items["Algorithm Name"] == "lung-ct" and items["Algorithm Version"] == "fake-1"
    assert items["Model file SHA-256"] == "0" * 64
    assert items["Finding"].CodeMeaning == "adenocarcinoma"
    for label, p in result.probabilities.items():
        assert items[f"Probability of {label.replace('_', ' ')}"] == pytest.approx(p)
    assert items["Source of Measurement"] == ct_instance.sop_instance_uid
    assert items["Class activation heat-map"] == sc_row.sop_instance_uid
    assert items["Comment"] == DISCLAIMER
    assert "Reason the model refused the image" not in items and "Call" not in items
    # highdicom reads it as a Comprehensive SR with the analysed image as evidence.
    report = hd.sr.srread(io.BytesIO(instance_part10_bytes(instance=sr_row)))
    assert isinstance(report, hd.sr.ComprehensiveSR)
    evidence = {i.ReferencedSOPInstanceUID for s in report.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert evidence == {ct_instance.sop_instance_uid, sc_row.sop_instance_uid}

    sc = _read(sc_row)
    image = sc.pixel_array
    assert sc.PhotometricInterpretation == "RGB" and image.shape == (original.Rows, original.Columns, 3)
    assert sc.BurnedInAnnotation == "YES" and "not a diagnosis" in sc.ImageComments
    # The fake heat-map is hot in the upper-left quarter: red there, grey (R == G == B) far away.
    hot = image[: original.Rows // 3, : original.Columns // 3].astype(int)
    assert (hot[..., 0] - hot[..., 2]).max() > 100
    cold = image[-10:, -10:].astype(int)
    assert np.abs(cold[..., 0] - cold[..., 2]).max() == 0


def test_refusal_and_call(ct_instance: Any, clinician: Any, models_dir: Path) -> None:
    refused = _analyse(ct_instance, clinician, RefusingBackend())
    study = ct_instance.series.study
    [sr_row] = _ai_instances(study, SR_CLASS)
    items = _items(_read(sr_row))
    assert items["Reason the model refused the image"] == "not a chest CT"
    assert "Finding" not in items and "Class activation heat-map" not in items
    assert _ai_instances(study, SC_CLASS) == [] and result_dicom_uids(refused).heatmap_sop_instance_uid == ""

    _analyse(ct_instance, clinician, CallingBackend())
    rows = _ai_instances(study, SR_CLASS)
    assert len(rows) == 2
    call = _items(_read(rows[-1]))["Call"]
    assert (call.CodeValue, call.CodingSchemeDesignator, call.CodeMeaning) == ("263654008", "SCT", "Abnormal")


def test_reanalysis_adds_a_report_and_overwrites_nothing(ct_instance: Any, clinician: Any, models_dir: Path) -> None:
    first = _analyse(ct_instance, clinician, FakeBackend())
    study = ct_instance.series.study
    [first_sr] = _ai_instances(study, SR_CLASS)
    first_bytes = instance_part10_bytes(instance=first_sr)
    # Storing the same result again is a duplicate, not a second copy.
    assert result_dicom_store(result=first).sr_sop_instance_uid == first_sr.sop_instance_uid
    assert len(_ai_instances(study, SR_CLASS)) == 1

    second = _analyse(ct_instance, clinician, CallingBackend())
    reports = _ai_instances(study, SR_CLASS)
    assert [r.sop_instance_uid for r in reports] == [result_dicom_uids(r).sr_sop_instance_uid for r in (first, second)]
    assert reports[0].series_id == reports[1].series_id  # one "MedVault AI: lung-ct" series
    assert [_items(_read(r))["Algorithm Version"] for r in reports] == ["fake-1", "fake-2"]
    assert instance_part10_bytes(instance=Instance.objects.get(pk=first_sr.pk)) == first_bytes
    assert len(_ai_instances(study, SC_CLASS)) == 2


def test_qido_finds_them_only_for_who_may_see_the_study(
    client: Any, ct_instance: Any, clinician: Any, other_clinician: Any, auth_header: Any, models_dir: Path
) -> None:
    _analyse(ct_instance, clinician, FakeBackend())
    study_uid = ct_instance.series.study.study_instance_uid
    url = f"/dicomweb/studies/{study_uid}/series"
    found = client.get(url, {"Modality": "SR"}, **auth_header(clinician))
    assert found.status_code == 200
    [series] = found.json()
    assert series["0008103E"]["Value"] == ["MedVault AI: lung-ct"]
    assert series["00201209"]["Value"] == [1]
    modalities = {s["00080060"]["Value"][0] for s in client.get(url, **auth_header(clinician)).json()}
    assert modalities == {"CT", "SR", "OT"}
    other = client.get(url, {"Modality": "SR"}, **auth_header(other_clinician))
    assert other.status_code in (200, 404)
    assert other.status_code == 404 or other.json() == []
    everywhere = client.get("/dicomweb/series", {"Modality": "SR"}, **auth_header(other_clinician))
    assert everywhere.json() == []
