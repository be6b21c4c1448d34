"""A 512x512 CT series for benchmarks, derived from real CT: the two frames of
``dicom/multiframe/eCT_Supplemental.dcm`` written as classic CT Image Storage slices (the
header of pydicom's CT_small.dcm, new UIDs, pixels shifted and noised per slice so no two
slices are alike)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ENHANCED_CT = SHARED / "dicom" / "multiframe" / "eCT_Supplemental.dcm"
CT_SMALL = SHARED / "dicom" / "single_ct" / "CT_small.dcm"


def ct_series_512(count: int, *, seed: int = 0, patient_id: str = "BENCH-CT",
                  patient_name: str = "Bench^CT") -> tuple[str, list[bytes]]:
    """``(study_uid, [Part 10 bytes, ...])`` of one ``count``-slice 512x512 CT series."""
    source = pydicom.dcmread(ENHANCED_CT)
    frames = source.pixel_array.astype(np.int32)  # stored values, 2 frames
    rng = np.random.default_rng(seed)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = []
    for index in range(count):
        ds = pydicom.dcmread(CT_SMALL)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        base = frames[index % len(frames)]
        pixels = np.roll(base, index % 9, axis=1) + rng.normal(0, 6, base.shape).round().astype(np.int32)
        ds.Rows, ds.Columns = base.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-180.0, -180.0, float(-index)]
        ds.SliceLocation = float(-index)
        ds.PixelData = np.clip(pixels, 0, 65535).astype(np.uint16).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
        ds.SeriesDescription = f"Bench CT {count} slices"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return study_uid, out
