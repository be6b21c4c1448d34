"""PNG/JPEG become Secondary Capture instances that keep the pixels and patient fields."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medvault.core.dicom.parse import DicomRejected, dataset_to_part10, parse_instance
from medvault.core.dicom.secondary_capture import image_to_secondary_capture

from .helpers import png_header


def _first(folder, pattern):
    return sorted(folder.rglob(pattern))[0]


@pytest.mark.parametrize(("folder", "pattern"), [("chest_ct", "*.png"), ("brain_mri", "*.jpg")])
def test_real_images_wrap_losslessly(shared_data, folder, pattern):
    path = _first(shared_data / folder, pattern)
    data = path.read_bytes()
    ds = image_to_secondary_capture(
        data, patient_id="P-1", patient_name="Doe^Jane", modality="MR",
        study_description="Brain", body_part="head",
    )
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert (ds.PatientID, str(ds.PatientName), ds.Modality) == ("P-1", "Doe^Jane", "MR")
    assert (ds.StudyDescription, ds.BodyPartExamined) == ("Brain", "HEAD")
    parsed = parse_instance(dataset_to_part10(ds))
    image = np.asarray(Image.open(io.BytesIO(data)))
    pixels = parsed.pixels[0]
    if pixels.ndim == 2 and image.ndim == 3:
        image = image[..., 0]
    assert np.array_equal(pixels, image)
    if pattern == "*.jpg":
        assert ds.LossyImageCompression == "01"


def test_decompression_bomb_header_is_refused():
    with pytest.raises(DicomRejected, match="decompression bomb"):
        image_to_secondary_capture(
            png_header(100_000, 100_000), patient_id="P", patient_name="X", modality="CT"
        )


def test_limit_setting_applies_below_pillows_own():
    buffer = io.BytesIO()
    Image.new("L", (300, 300)).save(buffer, format="PNG")
    with pytest.raises(DicomRejected, match="exceeds the limit"):
        image_to_secondary_capture(
            buffer.getvalue(), patient_id="P", patient_name="X", modality="CT",
            max_image_pixels=200 * 200,
        )


def test_patient_id_and_modality_are_required():
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    with pytest.raises(DicomRejected, match="patient ID"):
        image_to_secondary_capture(buffer.getvalue(), patient_id=" ", patient_name="", modality="CT")
