"""A generated CT series for tests: pydicom's bundled CT_small.dcm (a real CT slice) with
new UIDs and pixel data shifted and noised per instance, so no two instances share pixels."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def ct_series(
    count: int,
    *,
    patient_id: str = "GEN-CT-1",
    patient_name: str = "Generated^Series",
    study_uid: str | None = None,
    series_uid: str | None = None,
    seed: int = 0,
) -> list[bytes]:
    """``count`` Part 10 files (explicit VR little endian) of one CT series."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = template.pixel_array.astype(np.int32)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient_id
        ds.PatientName = patient_name
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        shifted = np.roll(base, shift=(i % 7, i % 5), axis=(0, 1))
        pixels = shifted + rng.normal(0, 8, size=base.shape).round().astype(np.int32)
        info = np.iinfo(template.pixel_array.dtype)
        ds.PixelData = np.clip(pixels, info.min, info.max).astype(template.pixel_array.dtype).tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out
