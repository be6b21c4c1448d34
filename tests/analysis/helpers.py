"""Helpers for the analysis tests: put real DICOM into the archive with fresh UIDs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CT_SMALL = SHARED_DATA / "dicom" / "single_ct" / "CT_small.dcm"
MR_SMALL = SHARED_DATA / "dicom" / "single_mr" / "MR_small.dcm"


def dicom_bytes(
    source: Path = CT_SMALL,
    *,
    body_part: str | None = "CHEST",
    study_uid: str | None = None,
    patient_id: str = "MV-ANALYSIS-1",
) -> bytes:
    """A real DICOM file re-identified with new UIDs (so each call is a new instance)."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.PatientID = patient_id
    if body_part is not None:
        ds.BodyPartExamined = body_part
    elif "BodyPartExamined" in ds:
        del ds.BodyPartExamined
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store(data: bytes, *, group: Any = None, user: Any = None) -> Any:
    """Store through the archive's ``instance_store`` and return the Instance row."""
    from medvault.archive.services import instance_store

    result = instance_store(data=data, source="test", user=user, group=group)
    assert result.status == "stored", (result.status, result.reason)
    return result.instance


def store_or_index(data: bytes, *, group: Any = None, user: Any = None) -> Any:
    """``store`` when the archive's ingest exists; otherwise index the rows directly
    (blob in the blob store, minimal index rows) so queue tests run on their own."""
    try:
        from medvault.archive.services import instance_store  # noqa: F401
    except ImportError:
        pass
    else:
        return store(data, group=group, user=user)
    from medvault.analysis.services import blob_store
    from medvault.archive.models import Instance, Patient, Series, Study

    ds = pydicom.dcmread(io.BytesIO(data))
    key = blob_store().put(data)
    patient, _ = Patient.objects.get_or_create(patient_id=str(ds.PatientID))
    study, _ = Study.objects.get_or_create(
        study_instance_uid=ds.StudyInstanceUID, defaults={"patient": patient, "group": group}
    )
    series, _ = Series.objects.get_or_create(
        series_instance_uid=ds.SeriesInstanceUID,
        defaults={"study": study, "modality": str(ds.get("Modality", "")),
                  "body_part_examined": str(ds.get("BodyPartExamined", ""))},
    )
    return Instance.objects.create(
        sop_instance_uid=ds.SOPInstanceUID, series=series, sop_class_uid=ds.SOPClassUID,
        rows=ds.Rows, columns=ds.Columns, received_transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
        transfer_syntax_uid=ds.file_meta.TransferSyntaxUID, blob_key=key, content_sha256=key,
        received_bytes=len(data), stored_bytes=len(data), metadata={}, uploaded_by=user,
    )
