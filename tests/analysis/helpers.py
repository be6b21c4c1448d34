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
    from medvault.archive.ingest import instance_store

    result = instance_store(data=data, source="test", user=user, group=group)
    assert result.status == "stored", (result.status, result.reason)
    return result.instance
