"""Helpers for archive tests: sample lists, archive snapshots, generated instances."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medvault.core.dicom.parse import dataset_to_part10

# Files of ../shared/data/dicom that are not instances or are broken on purpose.
NOT_INSTANCES = {"README.txt", "inventory.csv", "DICOMDIR"}


def dicom_samples(shared_data: Path) -> list[Path]:
    """Every file of the dicom/ folder except the README/inventory (sorted)."""
    root = shared_data / "dicom"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ("README.txt", "inventory.csv"))


def archive_snapshot(blob_dir: Path) -> dict:
    from medvault.archive.models import Instance, Patient, PatientConflict, Series, Study

    blobs = sorted(
        str(p.relative_to(blob_dir)) for p in blob_dir.rglob("*") if p.is_file() and "tmp" not in p.parts
    ) if blob_dir.exists() else []
    return {
        "patients": Patient.objects.count(),
        "studies": Study.objects.count(),
        "series": Series.objects.count(),
        "instances": Instance.objects.count(),
        "conflicts": PatientConflict.objects.count(),
        "study_counts": sorted(Study.objects.values_list("number_of_series", "number_of_instances")),
        "blobs": blobs,
    }


def ct_series(shared_data: Path, count: int, *, seed: int = 0) -> list[bytes]:
    """``count`` distinct CT instances of one new series built from CT_small (new UIDs,
    shifted pixels with noise)."""
    template = pydicom.dcmread(shared_data / "dicom/single_ct/CT_small.dcm")
    base = template.pixel_array.astype(np.int32)
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    out = []
    for index in range(count):
        ds = pydicom.dcmread(shared_data / "dicom/single_ct/CT_small.dcm")
        pixels = np.roll(base, index % 7, axis=1) + rng.normal(0, 4, base.shape).round().astype(np.int32)
        ds.PixelData = np.clip(pixels, -1024, 3000).astype(np.int16).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        out.append(dataset_to_part10(ds))
    return out


def write_files(folder: Path, blobs: list[bytes], prefix: str = "f") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(blobs):
        path = folder / f"{prefix}{index:04d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def read_pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


def subprocess_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "MEDVAULT_DATA_DIR": str(tmp_path / "data"),
            "MEDVAULT_BLOB_DIR": str(tmp_path / "data" / "blobs"),
            "MEDVAULT_AUTO_ANALYSE": "false",
            "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
        }
    )
    return env
