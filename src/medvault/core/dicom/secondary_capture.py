"""Wrap a PNG or JPEG image as a DICOM Secondary Capture instance (highdicom)."""

from __future__ import annotations

import datetime as dt
import warnings
from io import BytesIO

import highdicom as hd
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medvault.core.dicom.parse import DicomRejected, DicomTooLarge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def is_image(head: bytes) -> bool:
    return head.startswith(PNG_MAGIC) or head.startswith(JPEG_MAGIC)


def _decode(data: bytes, max_image_pixels: int) -> tuple[np.ndarray, str, bool]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data))
            width, height = image.size
            if width * height > max_image_pixels:
                raise DicomTooLarge(
                    f"image of {width}x{height} pixels exceeds the limit of "
                    f"{max_image_pixels} pixels (decompression bomb protection)"
                )
            fmt = image.format or ""
            image.load()
    except DicomTooLarge:
        raise  # a ValueError too: not "cannot read the image" below
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DicomTooLarge(f"image is too large (decompression bomb protection): {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DicomRejected(f"cannot read the image: {exc}") from None
    if fmt not in ("PNG", "JPEG"):
        raise DicomRejected(f"only PNG and JPEG images are accepted, not {fmt or 'unknown'}")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        array = np.asarray(image).astype(np.uint16)
        photometric = "MONOCHROME2"
    elif mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise DicomRejected("32-bit integer images are not supported")
        array = values.astype(np.uint16)
        photometric = "MONOCHROME2"
    elif mode in ("L", "LA", "1") or (mode == "P" and _palette_is_grey(image)):
        array = np.asarray(image.convert("L"))
        photometric = "MONOCHROME2"
    else:
        array = np.asarray(image.convert("RGB"))
        photometric = "RGB"
        if (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
            # Grey pictures saved as three equal channels: one channel holds all of it.
            array = array[..., 0]
            photometric = "MONOCHROME2"
    return np.ascontiguousarray(array), photometric, fmt == "JPEG"


def _palette_is_grey(image: Image.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def image_to_secondary_capture(
    data: bytes,
    *,
    patient_id: str,
    patient_name: str,
    modality: str,
    study_description: str = "",
    body_part: str = "",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    max_image_pixels: int = 64 * 1024 * 1024,
) -> Dataset:
    """Decode a PNG/JPEG and return a Secondary Capture data set carrying the given fields."""
    if not patient_id.strip():
        raise DicomRejected("a PNG/JPEG image needs a patient ID")
    if not modality.strip():
        raise DicomRejected("a PNG/JPEG image needs a modality (e.g. CT, MR)")
    array, photometric, was_jpeg = _decode(data, max_image_pixels)
    now = dt.datetime.now(dt.UTC)
    sc = hd.sc.SCImage(
        pixel_array=array,
        photometric_interpretation=photometric,
        bits_allocated=16 if array.dtype == np.uint16 else 8,
        # highdicom insists on a coordinate system; the orientation of an exported picture
        # is unknown, so Patient Orientation (type 2) is emptied below.
        coordinate_system="PATIENT",
        patient_orientation=("L", "P"),
        study_instance_uid=study_instance_uid or generate_uid(),
        series_instance_uid=series_instance_uid or generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=1,
        instance_number=instance_number,
        manufacturer="MedVault",
        patient_id=patient_id.strip()[:64],
        patient_name=patient_name.strip()[:320],
        study_date=now.date(),
        study_time=now.time().replace(microsecond=0),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    del sc.PatientOrientation
    sc.add_new(0x00200020, "CS", None)  # type 2: present, empty (orientation unknown)
    sc.Modality = modality.strip().upper()[:16]
    if study_description:
        sc.StudyDescription = study_description[:64]
    if body_part:
        sc.BodyPartExamined = body_part.strip().upper()[:16]
    sc.ConversionType = "WSD"
    if was_jpeg:
        # The pixel values were decoded from a lossy JPEG; say so, as PS3.3 C.7.6.1.1.5 asks.
        sc.LossyImageCompression = "01"
        sc.LossyImageCompressionMethod = "ISO_10918_1"
    return sc
