"""WADO-RS in Explicit VR Little Endian of instances stored JPEG-LS: the fast path (decode in
threads, splice native Pixel Data into the stored bytes) gives valid Part 10 files whose
pixels are exactly the ones received, and the same bytes as the general decompression."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, HTJ2KLossless, JPEGLSLossless, generate_uid

from medvault.archive.models import Instance
from medvault.archive.selectors import instance_part10_bytes
from medvault.dicomweb.views import wado

from .helpers import parts_of, stow

pytestmark = pytest.mark.django_db

ACCEPT_LE = f'multipart/related; type="application/dicom"; transfer-syntax={ExplicitVRLittleEndian}'


def _file(pixels: np.ndarray, *, bits_stored: int, signed: bool, samples: int = 1, study: str, series: str,
          number: int, planar: int | None = None) -> bytes:
    frames = pixels.shape[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName = "WADO-LS", "Decoded^Fast"
    ds.Modality = "OT"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0 if planar is None else planar
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _cases() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(7)
    study = generate_uid()

    def one(pixels: np.ndarray, number: int, **kw: Any) -> bytes:
        return _file(pixels, study=study, series=generate_uid(), number=number, **kw)

    ct16 = rng.integers(-2000, 3000, size=(1, 64, 48)).astype(np.int16)
    ct16[0, 0, :4] = [-32768, 32767, -1, 0]
    ct12 = rng.integers(-2048, 2048, size=(1, 40, 30)).astype(np.int16)  # signed, 12 bits stored
    rgb = rng.integers(0, 256, size=(1, 33, 21, 3)).astype(np.uint8)
    multi = rng.integers(0, 65536, size=(3, 32, 40)).astype(np.uint16)
    # 31 x 33 = 1023 bytes: padded to even. Smooth, so that CharLS encodes it (tiny noise
    # images can overflow its output buffer and are then kept as received).
    odd = (np.add.outer(np.arange(31), np.arange(33))[None] * 3 % 256).astype(np.uint8)
    return {
        "ct16_signed": [one(ct16, 1, bits_stored=16, signed=True)],
        "ct12_signed": [one(ct12, 2, bits_stored=12, signed=True)],
        "rgb8": [one(rgb, 3, bits_stored=8, signed=False, samples=3)],
        "multiframe": [one(multi, 4, bits_stored=16, signed=False)],
        "odd8": [one(odd, 5, bits_stored=8, signed=False)],
    }


def _store_cases(settings: Any, client: Any, user: Any, codec: str) -> dict[str, bytes]:
    """Every case stored through STOW-RS, compressed inline with ``codec``."""
    settings.MEDVAULT_COMPRESSION = codec
    cases = {name: files[0] for name, files in _cases().items()}
    response = stow(client, user.headers, list(cases.values()))
    assert response.status_code == 200, response.content
    return cases


@pytest.fixture
def stored_ls(blob_dir, no_analysis, compression_inline, settings, client, clinician_a) -> dict[str, bytes]:
    return _store_cases(settings, client, clinician_a, "jpegls")


def _retrieve(client: Any, user: Any, ds: Dataset) -> list[bytes]:
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    response = client.get(url, HTTP_ACCEPT=ACCEPT_LE, **user.headers)
    assert response.status_code == 200
    return parts_of(response)


@pytest.fixture(params=["jpegls", "htj2k"])
def stored_fast(request, blob_dir, no_analysis, compression_inline, settings, client, clinician_a) -> dict[str, bytes]:
    """The cases stored with each codec that has a fast path to native."""
    return _store_cases(settings, client, clinician_a, request.param)


@pytest.mark.parametrize("case", ["ct16_signed", "ct12_signed", "rgb8", "multiframe", "odd8"])
def test_decompressed_retrieval_is_bit_exact_and_takes_the_fast_path(
    stored_fast, case, client, clinician_a, monkeypatch, settings
) -> None:
    sent = pydicom.dcmread(io.BytesIO(stored_fast[case]))
    row = Instance.objects.get(sop_instance_uid=sent.SOPInstanceUID)
    assert row.transfer_syntax_uid == {"jpegls": JPEGLSLossless, "htj2k": HTJ2KLossless}[settings.MEDVAULT_COMPRESSION]
    taken: list[bool] = []
    fast = wado._native_bytes
    monkeypatch.setattr(wado, "_native_bytes", lambda data: taken.append(True) or fast(data))
    (part,) = _retrieve(client, clinician_a, sent)
    assert taken == [True]
    got = pydicom.dcmread(io.BytesIO(part))
    assert str(got.file_meta.TransferSyntaxUID) == ExplicitVRLittleEndian
    assert got.SOPInstanceUID == sent.SOPInstanceUID and got.PatientName == sent.PatientName
    assert got.pixel_array.dtype == sent.pixel_array.dtype
    assert np.array_equal(got.pixel_array, sent.pixel_array)
    assert got.PixelData == sent.PixelData  # native bytes as received, padding included
    # The same file the general path (pydicom decode, then splice or rewrite) produces.
    assert part == instance_part10_bytes(instance=row, transfer_syntax_uid=ExplicitVRLittleEndian)


def test_declined_files_fall_back_to_the_general_decompression(stored_ls, client, clinician_a, monkeypatch) -> None:
    monkeypatch.setattr(wado, "_native_bytes", lambda data: None)
    for raw in stored_ls.values():
        sent = pydicom.dcmread(io.BytesIO(raw))
        (part,) = _retrieve(client, clinician_a, sent)
        got = pydicom.dcmread(io.BytesIO(part))
        assert str(got.file_meta.TransferSyntaxUID) == ExplicitVRLittleEndian
        assert np.array_equal(got.pixel_array, sent.pixel_array)


def test_whole_study_in_order_and_no_access_for_other_groups(stored_ls, client, clinician_a, clinician_b) -> None:
    any_ds = pydicom.dcmread(io.BytesIO(next(iter(stored_ls.values()))))
    url = f"/dicomweb/studies/{any_ds.StudyInstanceUID}"
    assert client.get(url, HTTP_ACCEPT=ACCEPT_LE, **clinician_b.headers).status_code == 404
    response = client.get(url, HTTP_ACCEPT=ACCEPT_LE, **clinician_a.headers)
    assert response.status_code == 200
    got = [pydicom.dcmread(io.BytesIO(p)) for p in parts_of(response)]
    # The parts come in the archive's order (series, then instance number), whatever order
    # the decode threads finish in. Which series comes first is the index's order: the STOW
    # batch indexes a request's parts by study and series UID, not by arrival.
    expected = list(Instance.objects.filter(series__study__study_instance_uid=any_ds.StudyInstanceUID)
                    .order_by("series__series_number", "series_id", "instance_number", "pk")
                    .values_list("sop_instance_uid", flat=True))
    assert len(expected) == 5
    assert [ds.SOPInstanceUID for ds in got] == expected
    by_uid = {pydicom.dcmread(io.BytesIO(raw)).SOPInstanceUID: raw for raw in stored_ls.values()}
    for ds in got:
        sent = pydicom.dcmread(io.BytesIO(by_uid[ds.SOPInstanceUID]))
        assert np.array_equal(ds.pixel_array, sent.pixel_array)


def test_every_real_sample_stored_jpegls_comes_back_pixel_exact(
    shared_data, blob_dir, no_analysis, compression_inline, settings, client, clinician_a, monkeypatch
) -> None:
    settings.MEDVAULT_COMPRESSION = "jpegls"
    originals = {}
    for path in sorted((shared_data / "dicom").rglob("*")):
        if not path.is_file() or "invalid" in path.parts or path.name in ("DICOMDIR", "README.txt", "inventory.csv"):
            continue
        ds = pydicom.dcmread(path)
        if "PixelData" in ds and ds.SOPInstanceUID not in originals:
            originals[ds.SOPInstanceUID] = (ds, path.read_bytes())
    for _ds, raw in originals.values():
        stow(client, clinician_a.headers, [raw])
    results: list[bytes | None] = []
    fast = wado._native_bytes
    monkeypatch.setattr(wado, "_native_bytes", lambda data: results.append(fast(data)) or results[-1])
    compressed = Instance.objects.filter(transfer_syntax_uid=JPEGLSLossless)
    assert compressed.count() >= 10
    for row in compressed.select_related("series__study"):
        sent = originals[row.sop_instance_uid][0]
        url = f"/dicomweb/studies/{row.series.study.study_instance_uid}/series/{row.series.series_instance_uid}" \
              f"/instances/{row.sop_instance_uid}"
        response = client.get(url, HTTP_ACCEPT=ACCEPT_LE, **clinician_a.headers)
        assert response.status_code == 200
        (part,) = parts_of(response)
        got = pydicom.dcmread(io.BytesIO(part))
        assert str(got.file_meta.TransferSyntaxUID) == ExplicitVRLittleEndian
        assert np.array_equal(got.pixel_array, sent.pixel_array), row.sop_instance_uid
    # Most real samples take the fast path; the rest were declined and sent all the same.
    assert sum(r is not None for r in results) >= len(results) - 3


def test_decoding_ahead_is_bounded_in_files_and_bytes(stored_ls, monkeypatch) -> None:
    rows = list(Instance.objects.order_by("instance_number"))
    assert len(rows) == 5 and all(r.raw_pixel_bytes > 0 for r in rows)
    read: list[str] = []
    blob = wado.instance_blob
    monkeypatch.setattr(wado, "instance_blob", lambda *, instance: read.append(instance.sop_instance_uid)
                        or blob(instance=instance))
    monkeypatch.setattr(wado, "DECODE_AHEAD", 3)
    parts = wado._parts_in_order([(r, ExplicitVRLittleEndian) for r in rows], False)
    next(parts)
    assert len(read) == 3  # three files read and decoding, the first one sent
    assert len(list(parts)) == 4 and len(read) == 5
    read.clear()
    monkeypatch.setattr(wado, "DECODE_AHEAD_BYTES", 1)  # any file is over it: one at a time
    parts = wado._parts_in_order([(r, ExplicitVRLittleEndian) for r in rows], False)
    next(parts)
    assert len(read) == 1
    parts.close()  # the client went away: the pool is shut down, nothing more is read
    assert len(read) == 1
