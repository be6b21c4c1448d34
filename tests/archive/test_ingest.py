"""The ingest service and the archive commands on real data and a real database."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from core.dicom.helpers import png_header, rows_disagree, without_pixel_data, zip_bytes
from django.core.management import call_command
from PIL import Image
from pydicom.uid import generate_uid

from medvault.archive import indexing, selectors
from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance, Patient, PatientConflict, Series, Study
from medvault.archive.outcomes import StoreResult
from medvault.archive.uploads import image_store, upload_store
from medvault.core.dicom.parse import dataset_to_part10

from .helpers import archive_snapshot, dicom_samples, read_pixels

pytestmark = pytest.mark.django_db

JPEG_LS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _store(path: Path, **kwargs) -> StoreResult:
    return instance_store(data=path.read_bytes(), source="test", path=str(path), **kwargs)


@pytest.fixture
def all_samples(shared_data, blob_dir):
    results = {str(p.relative_to(shared_data / "dicom")): _store(p) for p in dicom_samples(shared_data)}
    return results


def test_every_sample_is_stored_or_has_a_sound_reason(all_samples):
    status = {name: r.status for name, r in all_samples.items()}
    rejected = {name: r.reason for name, r in all_samples.items() if r.status == "rejected"}
    assert set(rejected) == {"invalid/MR_truncated.dcm", "invalid/no_meta.dcm", "series_dicomdir/DICOMDIR"}
    assert "needs 8192 bytes" in rejected["invalid/MR_truncated.dcm"]
    assert "not a DICOM Part 10 file" in rejected["invalid/no_meta.dcm"]
    assert "DICOMDIR" in rejected["series_dicomdir/DICOMDIR"]
    # The same MR in five other transfer syntaxes is the same instance: duplicates.
    for name, value in status.items():
        if name.startswith("transfer_syntax/MR_small_"):
            assert value == "duplicate", name
    assert status["single_mr/MR_small.dcm"] == "stored"
    assert Instance.objects.count() == sum(1 for v in status.values() if v == "stored") == 40
    # The broken files left nothing: no row carries their UIDs under another content.
    truncated = all_samples["invalid/MR_truncated.dcm"].sop_instance_uid
    assert Instance.objects.get(sop_instance_uid=truncated).pixel_sha256 == (
        all_samples["single_mr/MR_small.dcm"].instance.pixel_sha256
    )


def test_dicomdir_tree_is_grouped_by_uids(dicom_data, blob_dir):
    for path in dicom_samples(dicom_data):
        if "series_dicomdir" in path.parts:
            _store(path)
    assert Patient.objects.count() == 2
    assert Study.objects.count() == 6
    assert Series.objects.count() == 13
    assert Instance.objects.count() == 31
    for study in Study.objects.all():
        assert study.number_of_instances == Instance.objects.filter(series__study=study).count()
        assert study.number_of_series == study.series.count()
        expected = sorted(set(study.series.values_list("modality", flat=True)))
        assert study.modalities_in_study.split("\\") == expected
    for series in Series.objects.all():
        assert series.number_of_instances == series.instances.count()


def test_export_returns_identical_pixels(shared_data, all_samples, tmp_path):
    originals = {}
    for path in dicom_samples(shared_data):
        try:
            ds = pydicom.dcmread(path)
            originals[str(ds.SOPInstanceUID)] = ds.pixel_array
        except Exception:  # the broken samples: nothing was stored of them
            continue
    for study in Study.objects.all():
        for ts, folder in ((None, "stored"), (EXPLICIT_LE, "native")):
            dest = tmp_path / folder / str(study.pk)
            args = ["export", "--study", study.study_instance_uid, str(dest)]
            if ts:
                args += ["--transfer-syntax", ts]
            call_command(*args, stdout=io.StringIO())
            files = sorted(p for p in dest.rglob("*") if p.is_file())
            assert len(files) == study.number_of_instances
            for file in files:
                ds = pydicom.dcmread(file)
                # DEST/<Study>/<Series>/<SOP>.dcm
                assert file.relative_to(dest).parts == (
                    study.study_instance_uid, str(ds.SeriesInstanceUID), f"{ds.SOPInstanceUID}.dcm")
                if ts:
                    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
                assert np.array_equal(ds.pixel_array, originals[str(ds.SOPInstanceUID)]), file


def test_stored_metadata_equals_received_apart_from_file_meta(shared_data, blob_dir, compression_inline):
    path = shared_data / "dicom/tcia/ACRIN-FLT-Breast_PT_a.dcm"
    instance = _store(path).instance
    received = pydicom.dcmread(path)
    stored = selectors.instance_dataset(instance=instance)
    assert stored.file_meta.TransferSyntaxUID == JPEG_LS
    for element in received:
        if element.tag == 0x7FE00010:
            continue
        assert stored[element.tag].value == element.value, element.keyword
    assert len(stored) == len(received)


def test_index_fields(shared_data, blob_dir, compression_inline):
    path = shared_data / "dicom/single_ct/CT_small.dcm"
    ds = pydicom.dcmread(path)
    result = _store(path)
    inst = result.instance
    blob = selectors.instance_part10_bytes(instance=inst)
    assert inst.blob_key == hashlib.sha256(blob).hexdigest()
    assert (inst.stored_bytes, inst.received_bytes) == (len(blob), path.stat().st_size)
    assert (inst.rows, inst.columns, inst.bits_allocated, inst.number_of_frames) == (128, 128, 16, 1)
    assert inst.sop_class_uid == ds.SOPClassUID and inst.instance_number == ds.InstanceNumber
    assert (inst.received_transfer_syntax_uid, inst.transfer_syntax_uid) == (EXPLICIT_LE, JPEG_LS)
    assert inst.raw_pixel_bytes == 128 * 128 * 2 and inst.source == "test"
    series = inst.series
    assert (series.modality, series.series_number) == ("CT", ds.SeriesNumber)
    study = series.study
    assert study.study_instance_uid == ds.StudyInstanceUID
    assert study.study_date.strftime("%Y%m%d") == ds.StudyDate
    assert study.accession_number == (ds.AccessionNumber or "")
    assert study.modalities_in_study == "CT"
    patient = study.patient
    assert (patient.patient_id, patient.patient_name, patient.patient_sex) == ("1CT1", "CompressedSamples^CT1", "O")
    assert inst.metadata["00100020"]["Value"] == ["1CT1"]
    multi = _store(shared_data / "dicom/multiframe/eCT_Supplemental.dcm").instance
    assert multi.number_of_frames == 2
    frames = pydicom.dcmread(shared_data / "dicom/multiframe/eCT_Supplemental.dcm").pixel_array
    assert np.array_equal(selectors.instance_pixels(instance=multi, frame=1), frames[1])
    assert np.array_equal(selectors.instance_pixels(instance=multi, frame=None), frames)
    with pytest.raises(IndexError):
        selectors.instance_pixels(instance=multi, frame=2)


def _variant(dicom_data, **changes) -> bytes:
    ds = pydicom.dcmread(dicom_data / "dicom/single_ct/CT_small.dcm")
    pixels = changes.pop("pixels", None)
    if pixels is not None:
        ds.PixelData = pixels.astype(np.int16).tobytes()
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return dataset_to_part10(ds)


def test_duplicate_and_conflicting_resend(dicom_data, blob_dir):
    path = dicom_data / "dicom/single_ct/CT_small.dcm"
    first = _store(path)
    before = archive_snapshot(blob_dir)
    assert _store(path).status == "duplicate"
    # The same instance in another transfer syntax is still a duplicate.
    implicit = pydicom.dcmread(path)
    implicit.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    dup = instance_store(data=dataset_to_part10(implicit), source="test")
    assert (dup.status, dup.instance.pk) == ("duplicate", first.instance.pk)
    # Same UID, other pixels: rejected, stored one kept.
    pixels = pydicom.dcmread(path).pixel_array.copy()
    pixels[0, 0] += 1
    other_pixels = instance_store(data=_variant(dicom_data, pixels=pixels), source="test")
    assert other_pixels.status == "rejected" and "different pixel data" in other_pixels.reason
    assert other_pixels.instance is None
    # Same UID, other metadata: rejected and the differing attribute is named.
    other_meta = instance_store(
        data=_variant(dicom_data, StudyDescription="changed"), source="test"
    )
    assert other_meta.status == "rejected" and "StudyDescription" in other_meta.reason
    assert archive_snapshot(blob_dir) == before
    assert np.array_equal(
        selectors.instance_pixels(instance=first.instance), pydicom.dcmread(path).pixel_array
    )


def test_patient_conflicts_are_recorded_never_merged(dicom_data, blob_dir):
    _store(dicom_data / "dicom/single_ct/CT_small.dcm")
    renamed = _variant(
        dicom_data, SOPInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
        StudyInstanceUID=generate_uid(), PatientName="Other^Person", PatientSex="F",
    )
    result = instance_store(data=renamed, source="test")
    assert result.status == "stored"
    assert Patient.objects.count() == 1
    conflicts = {c.field: (c.stored_value, c.received_value) for c in PatientConflict.objects.all()}
    assert conflicts == {
        "patient_name": ("CompressedSamples^CT1", "Other^Person"),
        "patient_sex": ("O", "F"),
    }
    # Another issuer is another patient: no conflict, a second row.
    other_issuer = _variant(
        dicom_data, SOPInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
        StudyInstanceUID=generate_uid(), IssuerOfPatientID="HOSPITAL-B", PatientName="Else^One",
    )
    assert instance_store(data=other_issuer, source="test").status == "stored"
    assert Patient.objects.count() == 2 and PatientConflict.objects.count() == 2
    out = io.StringIO()
    call_command("stats", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["patient_conflict_count"] == 2
    assert {c["field"] for c in stats["patient_conflicts"]} == {"patient_name", "patient_sex"}


def test_study_of_another_patient_is_rejected(dicom_data, blob_dir):
    _store(dicom_data / "dicom/single_ct/CT_small.dcm")
    intruder = _variant(dicom_data, SOPInstanceUID=generate_uid(), PatientID="SOMEONE-ELSE")
    before = archive_snapshot(blob_dir)
    result = instance_store(data=intruder, source="test")
    assert result.status == "rejected" and "another patient" in result.reason
    assert archive_snapshot(blob_dir)["instances"] == before["instances"]


def test_later_instances_of_a_series_join_it_and_keep_every_check(dicom_data, blob_dir):
    """The second and later instances of a series take the one-query lookup; what the long
    way checks (demographic conflicts, a series UID under another study) still holds."""
    first = _store(dicom_data / "dicom/single_ct/CT_small.dcm")
    renamed = _variant(dicom_data, SOPInstanceUID=generate_uid(), PatientName="Other^Person")
    second = instance_store(data=renamed, source="test")
    assert second.status == "stored"
    assert second.instance.series_id == first.instance.series_id
    series = Series.objects.get(pk=first.instance.series_id)
    assert series.number_of_instances == 2
    assert Study.objects.get(pk=series.study_id).number_of_instances == 2
    assert Study.objects.get(pk=series.study_id).number_of_series == 1
    conflicts = [(c.field, c.received_value) for c in PatientConflict.objects.all()]
    assert conflicts == [("patient_name", "Other^Person")]
    moved = _variant(dicom_data, SOPInstanceUID=generate_uid(), StudyInstanceUID=generate_uid())
    result = instance_store(data=moved, source="test")
    assert result.status == "rejected" and "another study" in result.reason
    assert Instance.objects.count() == 2


def test_bad_input_changes_nothing(dicom_data, blob_dir):
    _store(dicom_data / "dicom/single_mr/MR_small.dcm")
    before = archive_snapshot(blob_dir)
    ct = (dicom_data / "dicom/single_ct/CT_small.dcm").read_bytes()
    bomb = zip_bytes({"a.dcm": b"\x00" * (30 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
    cases = {
        "empty.dcm": (b"", "empty file"),
        "truncated.dcm": (ct[: len(ct) // 2], "Pixel Data holds"),
        "text.dcm": (b"patient notes, not an image\n" * 10, "not a DICOM Part 10 file"),
        "slip.zip": (zip_bytes({"ok.dcm": ct, "../../evil.dcm": ct}), "outside the archive"),
        "bomb.zip": (bomb, "possible ZIP bomb"),
        "bomb.png": (png_header(100_000, 100_000), "decompression bomb"),
        "nopixels.dcm": (without_pixel_data(dicom_data), "no Pixel Data"),
        "rows.dcm": (rows_disagree(dicom_data), "needs 65536 bytes"),
    }
    fields = {"patient_id": "P", "patient_name": "X^Y", "modality": "CT"}
    for name, (data, expected) in cases.items():
        results = upload_store(name=name, data=data, source="test", image_fields=fields)
        assert len(results) == 1, name
        assert results[0].status == "rejected", name
        assert expected in results[0].reason, (name, results[0].reason)
        assert results[0].path == name
    assert archive_snapshot(blob_dir) == before


def test_zip_upload_and_png_jpeg(shared_data, blob_dir):
    ct = (shared_data / "dicom/single_ct/CT_small.dcm").read_bytes()
    mr = (shared_data / "dicom/single_mr/MR_small.dcm").read_bytes()
    results = upload_store(
        name="batch.zip", data=zip_bytes({"x/ct.dcm": ct, "mr.dcm": mr, "notes.txt": b"hi"}), source="test"
    )
    assert [(r.path, r.status) for r in results] == [
        ("batch.zip:x/ct.dcm", "stored"), ("batch.zip:mr.dcm", "stored"), ("batch.zip:notes.txt", "rejected"),
    ]
    pictures = sorted((shared_data / "chest_ct").rglob("*.png"))[1:3]
    in_zip = upload_store(
        name="pics.zip", data=zip_bytes({p.name: p.read_bytes() for p in pictures}), source="test",
        image_fields={"patient_id": "ZIP-1", "patient_name": "Zip^Pics", "modality": "CT"},
    )
    assert [r.status for r in in_zip] == ["stored", "stored"]
    assert in_zip[0].instance.series_id == in_zip[1].instance.series_id  # one study, one series
    png = sorted((shared_data / "chest_ct").rglob("*.png"))[0].read_bytes()
    no_fields = upload_store(name="a.png", data=png, source="test")
    assert no_fields[0].status == "rejected" and "patient_id" in no_fields[0].reason
    fields = {"patient_id": "IMG-1", "patient_name": "Img^Test", "modality": "CT", "body_part": "CHEST"}
    stored = upload_store(name="a.png", data=png, source="test", image_fields=fields)[0]
    assert stored.status == "stored"
    assert stored.instance.series.modality == "CT" and stored.instance.sop_class_uid.endswith(".7")


def test_png_jpeg_samples_round_trip(shared_data, blob_dir, tmp_path):
    images = sorted((shared_data / "chest_ct").rglob("*.png"))[:3] + sorted(
        (shared_data / "chest_ct").rglob("*.jpg")
    )[:2] + sorted((shared_data / "brain_mri").rglob("*.jpg"))[:3]
    study_uid = generate_uid()
    for path in images:
        modality = "MR" if "brain_mri" in path.parts else "CT"
        result = image_store(
            data=path.read_bytes(), patient_id=f"IMG-{modality}", patient_name="Doe^Img",
            modality=modality, study_description="from pictures", source="test",
            study_instance_uid=study_uid if modality == "CT" else None, path=path.name,
        )
        assert result.status == "stored", (path, result.reason)
        exported = selectors.instance_part10_bytes(instance=result.instance, transfer_syntax_uid=EXPLICIT_LE)
        pixels = read_pixels(exported)
        original = np.asarray(Image.open(path))
        if pixels.ndim == 2 and original.ndim == 3:
            original = original[..., 0]
        elif original.ndim == 3 and original.shape[2] == 4:
            original = original[..., :3]
        assert np.array_equal(pixels, original), path
        ds = selectors.instance_dataset(instance=result.instance)
        assert (ds.PatientID, ds.Modality, ds.StudyDescription) == (f"IMG-{modality}", modality, "from pictures")
    ct_study = Study.objects.get(study_instance_uid=study_uid)
    assert ct_study.number_of_instances == 5 and ct_study.modalities_in_study == "CT"


def test_stored_hook_runs_on_commit_for_new_instances_only(
    dicom_data, blob_dir, django_capture_on_commit_callbacks
):
    seen = []

    def hook(instance):
        seen.append(instance.sop_instance_uid)

    indexing.register_stored_hook(hook)
    try:
        path = dicom_data / "dicom/single_mr/MR_small.dcm"
        with django_capture_on_commit_callbacks(execute=True):
            first = _store(path)
        with django_capture_on_commit_callbacks(execute=True):
            _store(path)
            _store(dicom_data / "dicom/invalid/MR_truncated.dcm")
    finally:
        indexing._stored_hooks.remove(hook)
    assert seen == [first.sop_instance_uid]


def test_compression_none_keeps_bytes_as_received(dicom_data, blob_dir, settings):
    settings.MEDVAULT_COMPRESSION = "none"
    path = dicom_data / "dicom/single_ct/CT_small.dcm"
    inst = _store(path).instance
    assert inst.transfer_syntax_uid == EXPLICIT_LE
    assert selectors.instance_part10_bytes(instance=inst) == path.read_bytes()


@pytest.mark.parametrize("codec", ["jpeg2000", "htj2k", "jpegxl"])
def test_other_codecs_store_bit_exact(shared_data, blob_dir, settings, codec, compression_inline):
    settings.MEDVAULT_COMPRESSION = codec
    path = shared_data / "dicom/tcia/PROSTATE-MRI_MR.dcm"  # unsigned: every codec applies
    inst = _store(path).instance
    assert inst.transfer_syntax_uid != EXPLICIT_LE and inst.stored_bytes < inst.received_bytes
    assert np.array_equal(selectors.instance_pixels(instance=inst), pydicom.dcmread(path).pixel_array)
    native = selectors.instance_dataset(instance=inst, transfer_syntax_uid=EXPLICIT_LE)
    assert np.array_equal(native.pixel_array, pydicom.dcmread(path).pixel_array)
    # Other apps call pixel_array on the stored data set: it works for every syntax,
    # JPEG XL included (pydicom is taught to decode it).
    stored = selectors.instance_dataset(instance=inst)
    assert np.array_equal(stored.pixel_array, pydicom.dcmread(path).pixel_array)


def test_lossy_input_is_never_reencoded(shared_data, blob_dir):
    jpeg = sorted((shared_data / "brain_mri").rglob("*.jpg"))[0]
    image = np.asarray(Image.open(jpeg).convert("L"))
    ds = pydicom.dcmread(shared_data / "dicom/single_ct/CT_small.dcm")
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    from pydicom.encaps import encapsulate

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    data = dataset_to_part10(ds)
    inst = instance_store(data=data, source="test").instance
    assert inst.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    assert selectors.instance_part10_bytes(instance=inst) == data


def test_ingest_command_json_lines_and_exit_code(shared_data, blob_dir, tmp_path):
    out = io.StringIO()
    call_command("ingest", str(shared_data / "dicom/single_mr"), stdout=out, stderr=io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(Path(line["path"]).name, line["status"]) for line in lines} == {
        ("MR_small.dcm", "stored"), ("MR2_UNCR.dcm", "stored")
    }
    assert set(lines[0]) == {"path", "status", "sop_instance_uid", "reason", "reject"}
    bad = tmp_path / "bad.dcm"
    bad.write_text("not dicom")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("ingest", str(bad), str(shared_data / "dicom/single_mr/MR_small.dcm"),
                     stdout=out, stderr=io.StringIO())
    assert exit_info.value.code == 1
    statuses = [json.loads(line)["status"] for line in out.getvalue().splitlines()]
    assert statuses == ["rejected", "duplicate"]
    png = sorted((shared_data / "brain_mri").rglob("*.jpg"))[:2]
    out = io.StringIO()
    call_command("ingest", *map(str, png), "--patient-id", "B-1", "--patient-name", "Brain^Scan",
                 "--modality", "MR", "--group", "Neuro", stdout=out, stderr=io.StringIO())
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["status"] for r in results] == ["stored", "stored"]
    study = Instance.objects.get(sop_instance_uid=results[0]["sop_instance_uid"]).series.study
    assert study.group.name == "Neuro" and study.number_of_instances == 2


def test_stats_figures(shared_data, blob_dir, compression_inline):
    for name in ("single_ct/CT_small.dcm", "single_mr/MR2_UNCR.dcm", "tcia/PROSTATE-MRI_MR.dcm"):
        _store(shared_data / "dicom" / name)
    out = io.StringIO()
    call_command("stats", stdout=out)
    stats = json.loads(out.getvalue())
    assert (stats["patients"], stats["studies"], stats["series"], stats["instances"]) == (3, 3, 3, 3)
    total = sum(i.stored_bytes for i in Instance.objects.all())
    assert stats["stored_bytes"] == total
    assert stats["raw_pixel_bytes"] == 128 * 128 * 2 + 1024 * 1024 * 2 + 176 * 176 * 2
    assert set(stats["by_modality"]) == {"CT", "MR"}
    assert stats["by_modality"]["MR"]["instances"] == 2
    assert stats["by_modality"]["CT"]["ratio_raw_to_stored"] > 1.5
    assert list(stats["by_transfer_syntax"]) == [JPEG_LS]


def test_scrub_reports_and_repairs_only_orphans(dicom_data, blob_dir):
    from medvault.archive.blobstore import blob_store

    a = _store(dicom_data / "dicom/single_ct/CT_small.dcm").instance
    b = _store(dicom_data / "dicom/single_mr/MR_small.dcm").instance
    c = _store(sorted((dicom_data / "dicom/series_dicomdir/98892001/CT5N").iterdir())[0]).instance
    store = blob_store()
    orphan = store.put(b"left behind by a crash")
    store.delete(b.blob_key)  # missing
    corrupt_path = blob_dir / c.blob_key[:2] / c.blob_key[2:4] / c.blob_key
    corrupt_path.write_bytes(corrupt_path.read_bytes()[:-10] + b"0123456789")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("scrub", "--min-age", "0", "--repair", stdout=out)
    report = json.loads(out.getvalue())
    assert report["missing"] == [{"blob_key": b.blob_key, "sop_instance_uid": b.sop_instance_uid}]
    assert report["corrupt"] == [{"blob_key": c.blob_key, "sop_instance_uids": [c.sop_instance_uid]}]
    assert report["orphans"] == [orphan] and report["deleted"] == [orphan]
    assert store.exists(a.blob_key) and store.exists(c.blob_key) and not store.exists(orphan)
    # A young unreferenced blob is an ingest in flight: neither reported nor deleted.
    young = store.put(b"in flight")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("scrub", "--repair", stdout=out)
    assert store.exists(young) and json.loads(out.getvalue())["young_unreferenced"] == 1


def test_scrub_clean_archive_exits_zero(dicom_data, blob_dir):
    _store(dicom_data / "dicom/single_ct/CT_small.dcm")
    out = io.StringIO()
    call_command("scrub", "--min-age", "0", stdout=out)
    report = json.loads(out.getvalue())
    assert report["blobs_checked"] == report["rows_checked"] == 1


def test_bare_dataset_with_known_syntax_is_stored(dicom_data, blob_dir):
    """As C-STORE hands it over: no preamble or file meta, the syntax from the association."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    path = dicom_data / "dicom/single_ct/CT_small.dcm"
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, pydicom.dcmread(path))
    bare = buffer.getvalue()
    assert instance_store(data=bare, source="c-store").status == "rejected"
    result = instance_store(data=bare, source="c-store", transfer_syntax_uid="1.2.840.10008.1.2")
    assert result.status == "stored"
    assert result.instance.received_transfer_syntax_uid == "1.2.840.10008.1.2"
    assert np.array_equal(selectors.instance_pixels(instance=result.instance), pydicom.dcmread(path).pixel_array)
    # The same instance as a Part 10 file is a duplicate of it.
    assert _store(path).status == "duplicate"


def test_structured_report_without_pixels_is_accepted(dicom_data, blob_dir):
    """SR documents have no pixels by definition; they are filed with their study."""
    ds = pydicom.dcmread(dicom_data / "dicom/single_ct/CT_small.dcm")
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    data = dataset_to_part10(ds)
    result = instance_store(data=data, source="test")
    assert result.status == "stored", result.reason
    inst = result.instance
    assert (inst.rows, inst.raw_pixel_bytes, inst.pixel_sha256) == (None, 0, "")
    assert selectors.instance_part10_bytes(instance=inst) == data
    assert "7FE00010" not in inst.metadata


def test_ingest_command_compresses_before_it_returns_even_when_deferred_is_the_default(
    dicom_data, blob_dir, settings
):
    """A bulk import has no peer waiting: the archive is compressed when the command ends."""
    from medvault.archive.models import CompressionTask

    settings.MEDVAULT_COMPRESSION_DEFERRED = True
    settings.MEDVAULT_COMPRESSION = "jpegls"
    out = io.StringIO()
    call_command("ingest", str(dicom_data / "dicom/single_ct/CT_small.dcm"), stdout=out, stderr=io.StringIO())
    uid = json.loads(out.getvalue().splitlines()[0])["sop_instance_uid"]
    assert Instance.objects.get(sop_instance_uid=uid).transfer_syntax_uid == "1.2.840.10008.1.2.4.80"
    assert not CompressionTask.objects.exists()
    # The command's choice was for its own run: the caller's setting is as it was.
    assert settings.MEDVAULT_COMPRESSION_DEFERRED is True

    out = io.StringIO()
    call_command("ingest", "--defer-compression", str(dicom_data / "dicom/single_mr/MR_small.dcm"),
                 stdout=out, stderr=io.StringIO())
    uid = json.loads(out.getvalue().splitlines()[0])["sop_instance_uid"]
    assert Instance.objects.get(sop_instance_uid=uid).transfer_syntax_uid != "1.2.840.10008.1.2.4.80"
    assert CompressionTask.objects.filter(instance__sop_instance_uid=uid).exists()
