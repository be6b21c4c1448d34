"""The compression worker's native fast path (``core.codecs.native_recompress``): pixels viewed in the
stored file, re-encoded, spliced behind the received header and verified by decoding the
kept bytes. Bit-exact on the pixel layouts it takes; anything else goes the general way
(parse, re-encode, decode the new file) and is verified there; a wrong encoding is never
swapped in."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from medvault.archive import compression, selectors
from medvault.archive.compression import CompressionOutcome, compression_drain
from medvault.archive.ingest import instance_store
from medvault.archive.models import CompressionTask, Instance
from medvault.archive.outcomes import StoreStatus
from medvault.core.codecs import native_recompress as native

from .helpers import ct_series, read_pixels

pytestmark = pytest.mark.django_db

JPEG_LS = "1.2.840.10008.1.2.4.80"


@pytest.fixture
def deferred(settings: Any, blob_dir: Any) -> Any:
    settings.MEDVAULT_COMPRESSION_DEFERRED = True
    settings.MEDVAULT_COMPRESSION = "jpegls"
    return blob_dir


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of instances that went the fast way (spliced) and the general way."""
    seen = {"fast": 0, "general": 0}
    fast, general = compression.recompress_native, compression._general

    def spy_fast(*args: Any, **kwargs: Any) -> Any:
        result = fast(*args, **kwargs)
        seen["fast"] += result is not None
        return result

    def spy_general(*args: Any, **kwargs: Any) -> Any:
        seen["general"] += 1
        return general(*args, **kwargs)

    monkeypatch.setattr(compression, "recompress_native", spy_fast)
    monkeypatch.setattr(compression, "_general", spy_general)
    return seen


def _image(
    dicom_data: Any, pixels: np.ndarray, *, bits_stored: int, signed: bool, photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian, planar: int | None = None,
) -> bytes:
    """A Part 10 file of ``pixels`` (frames, rows, cols[, 3]) on CT_small's header."""
    ds = pydicom.dcmread(dicom_data / "dicom/single_ct/CT_small.dcm")
    frames, rows, cols = pixels.shape[:3]
    samples = pixels.shape[3] if pixels.ndim == 4 else 1
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
    if planar is not None:
        ds.PlanarConfiguration = planar
    byteorder = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(byteorder)).tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    out = io.BytesIO()
    pydicom.dcmwrite(
        out, ds, enforce_file_format=True, implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        little_endian=transfer_syntax != ExplicitVRBigEndian,
    )
    return out.getvalue()


def _stored(data: bytes) -> Instance:
    result = instance_store(data=data, source="test")
    assert result.status == StoreStatus.STORED, result.reason
    assert result.instance is not None
    return result.instance


def _assert_compressed_bit_exact(inst: Instance, data: bytes, expected: np.ndarray) -> None:
    inst.refresh_from_db()
    assert inst.transfer_syntax_uid == JPEG_LS
    blob = selectors.instance_blob(instance=inst)
    kept = pydicom.dcmread(io.BytesIO(blob))  # a valid Part 10 file, read in full
    assert kept.file_meta.TransferSyntaxUID == JPEG_LS
    assert np.array_equal(kept.pixel_array.reshape(expected.shape), expected)
    assert np.array_equal(read_pixels(data).reshape(expected.shape), expected)
    assert np.array_equal(selectors.instance_pixels(instance=inst, frame=None).reshape(expected.shape), expected)


RNG = np.random.default_rng(15)


@pytest.mark.parametrize(
    "name, pixels, bits_stored, signed, photometric",
    [
        ("16-bit signed", RNG.integers(-32768, 32767, (1, 64, 48), dtype=np.int16), 16, True, "MONOCHROME2"),
        ("12-bit signed in 16", RNG.integers(-2048, 2047, (1, 64, 48), dtype=np.int16), 12, True, "MONOCHROME2"),
        ("12-bit unsigned in 16", RNG.integers(0, 4095, (1, 64, 48), dtype=np.uint16), 12, False, "MONOCHROME1"),
        ("8-bit RGB", RNG.integers(0, 255, (1, 40, 56, 3), dtype=np.uint8), 8, False, "RGB"),
        ("multi-frame 16-bit", RNG.integers(0, 60000, (3, 32, 40), dtype=np.uint16), 16, False, "MONOCHROME2"),
        ("multi-frame 8-bit RGB", RNG.integers(0, 255, (2, 16, 24, 3), dtype=np.uint8), 8, False, "RGB"),
    ],
)
def test_the_fast_path_is_bit_exact(
    dicom_data: Any, deferred: Any, paths: dict[str, int], name: str, pixels: np.ndarray,
    bits_stored: int, signed: bool, photometric: str,
) -> None:
    data = _image(dicom_data, pixels, bits_stored=bits_stored, signed=signed, photometric=photometric,
                  planar=0 if pixels.ndim == 4 else None)
    inst = _stored(data)
    stats = compression_drain(keep_seconds=0)
    assert (stats.compressed, stats.failed, stats.kept) == (1, 0, 0), stats.errors
    assert paths == {"fast": 1, "general": 0}
    _assert_compressed_bit_exact(inst, data, pixels)


def test_the_fast_path_keeps_every_header_byte(dicom_data: Any, deferred: Any, paths: dict[str, int]) -> None:
    data = ct_series(dicom_data, 1, seed=41)[0]
    inst = _stored(data)
    assert compression_drain(keep_seconds=0).compressed == 1 and paths["fast"] == 1
    inst.refresh_from_db()
    blob = selectors.instance_blob(instance=inst)
    before, after = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(blob))
    for element in before:
        if element.tag != 0x7FE00010:
            assert after[element.tag].value == element.value
    start = 144 + int.from_bytes(data[140:144], "little")
    header = data[start : data.rindex(b"\xe0\x7f\x10\x00OW")]
    assert header in blob  # the data set up to Pixel Data, byte for byte


@pytest.mark.parametrize(
    "name, transfer_syntax", [("implicit VR", ImplicitVRLittleEndian), ("big endian", ExplicitVRBigEndian)]
)
def test_input_the_fast_path_cannot_take_goes_the_general_way_verified(
    dicom_data: Any, deferred: Any, paths: dict[str, int], name: str, transfer_syntax: str
) -> None:
    pixels = RNG.integers(-1000, 3000, (1, 48, 40), dtype=np.int16)
    data = _image(dicom_data, pixels, bits_stored=16, signed=True, transfer_syntax=transfer_syntax)
    assert native.native_image(data) is None
    inst = _stored(data)
    stats = compression_drain(keep_seconds=0)
    assert (stats.compressed, stats.failed) == (1, 0), stats.errors
    assert paths == {"fast": 0, "general": 1}
    _assert_compressed_bit_exact(inst, data, pixels)


def test_a_fast_path_encoding_that_decodes_differently_is_never_swapped_in(
    dicom_data: Any, deferred: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ct_series(dicom_data, 1, seed=42)[0]
    inst = _stored(data)
    old_key = inst.blob_key
    encode = native.encode_frames

    def off_by_one(codec: str, pixels: np.ndarray, ds: Any, **kwargs: Any) -> list[bytes]:
        return encode(codec, pixels + 1, ds, **kwargs)  # a codec bug: valid stream, wrong pixels

    monkeypatch.setattr(native, "encode_frames", off_by_one)
    task = compression.compression_claim(worker_id="t")
    assert task is not None
    assert compression.compression_run(task=task)[0] is CompressionOutcome.FAILED
    inst.refresh_from_db()
    assert inst.blob_key == old_key and selectors.instance_blob(instance=inst) == data
    assert "different pixels" in CompressionTask.objects.get(instance=inst).error


def test_a_blob_whose_bytes_do_not_hash_to_the_index_is_not_taken_by_the_fast_path(
    dicom_data: Any, deferred: Any, paths: dict[str, int]
) -> None:
    data = ct_series(dicom_data, 1, seed=43)[0]
    inst = _stored(data)
    Instance.objects.filter(pk=inst.pk).update(pixel_sha256="0" * 64)
    stats = compression_drain(keep_seconds=0)
    assert (stats.compressed, stats.failed) == (0, 1)
    assert paths == {"fast": 0, "general": 1}  # the general path refused it, verified
    inst.refresh_from_db()
    assert inst.blob_key and selectors.instance_blob(instance=inst) == data


def test_a_batch_claim_takes_each_task_once_and_leaves_leased_ones(dicom_data: Any, deferred: Any) -> None:
    for data in ct_series(dicom_data, 5, seed=44):
        _stored(data)
    first = compression.TASKS.claim_many(worker_id="a", count=3)
    second = compression.TASKS.claim_many(worker_id="b", count=3)
    assert [len(first), len(second)] == [3, 2]
    assert not {t.pk for t in first} & {t.pk for t in second}
    assert compression.TASKS.claim_many(worker_id="c", count=3) == []  # all leased
    assert all(t.worker_id == "a" and t.attempts == 1 for t in first)
    CompressionTask.objects.filter(pk=first[0].pk).update(lease_until=None)  # lease over
    again = compression.TASKS.claim_many(worker_id="c", count=3)
    assert [t.pk for t in again] == [first[0].pk] and again[0].attempts == 2
    # The attempt whose lease ran out no longer owns its task.
    assert compression.compression_run_many([first[0]])[0][0] is CompressionOutcome.GONE
    assert compression.compression_run_many(again)[0][0] is CompressionOutcome.COMPRESSED


def test_the_worker_compresses_a_batch_per_claim(
    dicom_data: Any, deferred: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from medvault.analysis.worker import worker_run

    settings.MEDVAULT_AUTO_ANALYSE = False
    for data in ct_series(dicom_data, 3, seed=45):
        _stored(data)
    claims: list[int] = []
    queue = type(compression.TASKS)
    claim_many = queue.claim_many

    def spy(self: Any, **kwargs: Any) -> Any:
        found = claim_many(self, **kwargs)
        claims.append(len(found))
        return found

    monkeypatch.setattr(queue, "claim_many", spy)
    stats = worker_run(stop=threading.Event(), once=True, backend=object())  # type: ignore[arg-type]
    assert stats.compressed == 3
    assert claims[:2] == [3, 0]  # all three in one claim, then none left
    assert set(Instance.objects.values_list("transfer_syntax_uid", flat=True)) == {JPEG_LS}
