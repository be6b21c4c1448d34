"""``medvault export``: layout, never overwriting, decompression of every stored syntax and
1-bit re-packing. pydicom's bundled files: no ../shared/data needed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import call_command
from pydicom.data import get_testdata_file
from pydicom.pixels.utils import pack_bits
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance
from medvault.archive.outcomes import StoreStatus
from medvault.core.dicom.parse import dataset_to_part10

pytestmark = pytest.mark.django_db
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files here")
    return Path(path).read_bytes()


def _store(data: bytes) -> Instance:
    result = instance_store(data=data, source="cli")
    assert result.status == StoreStatus.STORED, result.reason
    return result.instance


def _export(dest: Path, *args: str) -> tuple[dict, int]:
    out = io.StringIO()
    try:
        call_command("export", *args, str(dest), stdout=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return json.loads(out.getvalue()), code


def _path(dest: Path, instance: Instance) -> Path:
    return (
        dest
        / instance.series.study.study_instance_uid
        / instance.series.series_instance_uid
        / f"{instance.sop_instance_uid}.dcm"
    )


# --- finding 1: received-compressed instances decompress correctly ---------------------


@pytest.mark.parametrize(
    "name",
    ["693_J2KI.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"],
)
def test_export_decompresses_what_arrived_compressed(blob_dir, tmp_path, name):
    data = _bundled(name)
    instance = _store(data)
    report, code = _export(
        tmp_path, "--instance", instance.sop_instance_uid, "--transfer-syntax", EXPLICIT_LE
    )
    assert code == 0 and report["files"] == 1, report
    out = pydicom.dcmread(_path(tmp_path, instance))
    original = pydicom.dcmread(io.BytesIO(data))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert not out["PixelData"].is_undefined_length
    assert np.array_equal(out.pixel_array, original.pixel_array)


# --- finding 2: 1-bit data is packed again on the way out ------------------------------


def _one_bit_three_frames() -> bytes:
    """A 3-frame 1-bit segmentation-like instance, deflated (kept as received)."""
    ds = pydicom.dcmread(io.BytesIO(_bundled("liver_1frame.dcm")))
    frame = ds.pixel_array.astype(np.uint8)
    frames = np.stack([frame, 1 - frame, np.roll(frame, 9, axis=1)])
    ds.PixelData = pack_bits(frames.reshape(-1))
    ds.NumberOfFrames = 3
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return dataset_to_part10(ds), frames


@pytest.mark.parametrize("which", ["big-endian", "deflated-3-frames"])
def test_one_bit_pixels_come_back_packed(blob_dir, tmp_path, which):
    if which == "big-endian":
        data = _bundled("liver_expb_1frame.dcm")
        expected = pydicom.dcmread(io.BytesIO(data)).pixel_array.reshape(1, 512, 512)
    else:
        data, expected = _one_bit_three_frames()
    instance = _store(data)
    report, code = _export(
        tmp_path, "--instance", instance.sop_instance_uid, "--transfer-syntax", EXPLICIT_LE
    )
    assert code == 0, report
    out = pydicom.dcmread(_path(tmp_path, instance))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert len(out.PixelData) == (expected.size + 7) // 8
    assert np.array_equal(out.pixel_array.reshape(expected.shape), expected)


# --- finding 3: exports never overwrite each other -------------------------------------


def test_exports_lay_files_out_by_uid_and_never_overwrite(blob_dir, tmp_path, settings):
    settings.MEDVAULT_COMPRESSION = "none"  # kept byte for byte, so compared byte for byte
    tmp_path = tmp_path / "out"
    first = _store(_bundled("CT_small.dcm"))
    second = _store(_bundled("MR_small.dcm"))
    for instance in (first, second):
        report, code = _export(tmp_path, "--instance", instance.sop_instance_uid)
        assert code == 0 and report["files"] == 1
    assert _path(tmp_path, first).read_bytes() == _bundled("CT_small.dcm")
    assert _path(tmp_path, second).read_bytes() == _bundled("MR_small.dcm")
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2
    # Again into the same folder: an error, and the file is untouched.
    _path(tmp_path, first).write_bytes(b"edited by hand")
    report, code = _export(tmp_path, "--instance", first.sop_instance_uid)
    assert code == 1 and report["files"] == 0
    assert "not overwritten" in report["errors"][0]["error"]
    assert _path(tmp_path, first).read_bytes() == b"edited by hand"
    report, code = _export(
        tmp_path, "--study", first.series.study.study_instance_uid, "--skip-existing"
    )
    assert code == 0 and report["skipped"] == 1 and report["files"] == 0
    assert _path(tmp_path, first).read_bytes() == b"edited by hand"
    assert not list(tmp_path.rglob("*.part"))


def test_dicomdir_layout(blob_dir, tmp_path, settings):
    from pydicom.fileset import FileSet

    settings.MEDVAULT_COMPRESSION = "none"
    stored = [_store(_bundled(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    dest = tmp_path / "fileset"
    report, code = _export(dest, "--study", stored[0].series.study.study_instance_uid, "--dicomdir")
    assert code == 0 and report["files"] == 1, report
    fileset = FileSet(dest / "DICOMDIR")
    (record,) = list(fileset)
    assert record.SOPInstanceUID == stored[0].sop_instance_uid
    assert (dest / record.FileID).read_bytes() == _bundled("CT_small.dcm")
    # Never into a folder that holds something.
    with pytest.raises(Exception, match="not empty"):
        call_command(
            "export",
            "--instance",
            stored[1].sop_instance_uid,
            str(dest),
            "--dicomdir",
            stdout=io.StringIO(),
        )
