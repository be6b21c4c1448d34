"""Parsing and validation of real and broken DICOM."""

from __future__ import annotations

import pytest

from medvault.core.dicom.json import canonical_sha256
from medvault.core.dicom.parse import DicomRejected, parse_instance

from .helpers import ct_small, part10, rows_disagree, without_pixel_data


def _reason(data: bytes, **kwargs) -> str:
    with pytest.raises(DicomRejected) as info:
        parse_instance(data, **kwargs)
    return info.value.reason


def test_invalid_samples_are_rejected_with_clear_reasons(dicom_data):
    truncated = _reason((dicom_data / "dicom/invalid/MR_truncated.dcm").read_bytes())
    assert "Pixel Data holds 8130 bytes" in truncated and "needs 8192" in truncated
    no_meta = _reason((dicom_data / "dicom/invalid/no_meta.dcm").read_bytes())
    assert "not a DICOM Part 10 file" in no_meta


def test_bare_dataset_is_read_when_the_caller_knows_the_syntax(dicom_data):
    """C-STORE hands over a data set without file meta plus the negotiated syntax."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = ct_small(dicom_data)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True  # as on the wire
    write_dataset(buffer, ds)
    parsed = parse_instance(buffer.getvalue(), transfer_syntax_uid="1.2.840.10008.1.2")
    assert parsed.pixels.shape == (1, 128, 128)
    assert parsed.dataset.file_meta.MediaStorageSOPInstanceUID == parsed.sop_instance_uid
    assert parsed.received_transfer_syntax_uid == "1.2.840.10008.1.2"
    # The broken sample (a stray byte before the first tag) is still refused.
    bad = (dicom_data / "dicom/invalid/no_meta.dcm").read_bytes()
    assert "SOPInstanceUID" in _reason(bad, transfer_syntax_uid="1.2.840.10008.1.2.1")


def test_dicomdir_is_not_an_instance(dicom_data):
    reason = _reason((dicom_data / "dicom/series_dicomdir/DICOMDIR").read_bytes())
    assert "DICOMDIR" in reason


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: b"", "empty file"),
        (lambda d: b"hello, this is a text file\n" * 20, "not a DICOM Part 10 file"),
        (without_pixel_data, "no Pixel Data"),
        (rows_disagree, "Rows 256 x Columns 128"),
    ],
)
def test_bad_input_reasons(dicom_data, make, expected):
    assert expected in _reason(make(dicom_data))


@pytest.mark.parametrize("cut", [100, 132, 400, 1000, 20000, 39000])
def test_truncated_files_are_rejected(dicom_data, cut):
    data = (dicom_data / "dicom/single_ct/CT_small.dcm").read_bytes()[:cut]
    assert _reason(data)


def test_missing_uid_is_named(dicom_data):
    ds = ct_small(dicom_data)
    del ds.StudyInstanceUID
    assert "StudyInstanceUID" in _reason(part10(ds))
    ds = ct_small(dicom_data)
    ds.SeriesInstanceUID = "1.2.x.3"
    assert "not a valid UID" in _reason(part10(ds))


def test_frame_size_limit(dicom_data):
    data = (dicom_data / "dicom/single_ct/CT_small.dcm").read_bytes()
    assert "exceeds the limit" in _reason(data, max_image_pixels=100 * 100)


def test_every_frame_is_decoded_and_hashed(shared_data):
    parsed = parse_instance((shared_data / "dicom/multiframe/emri_small.dcm").read_bytes())
    assert parsed.pixels.shape == (10, 64, 64)
    assert parsed.raw_pixel_bytes == 10 * 64 * 64 * 2
    assert parsed.pixels_exact and not parsed.lossy


def test_same_instance_in_every_syntax_has_one_identity(dicom_data):
    names = ["single_mr/MR_small.dcm"] + [
        f"transfer_syntax/MR_small_{s}.dcm"
        for s in ("RLE", "bigendian", "implicit", "jp2klossless", "jpeg_ls_lossless")
    ]
    parsed = [parse_instance((dicom_data / "dicom" / n).read_bytes()) for n in names]
    assert len({p.pixel_sha256 for p in parsed}) == 1
    assert len({p.content_sha256 for p in parsed}) == 1


def test_metadata_has_no_bulk_data(shared_data):
    parsed = parse_instance((shared_data / "dicom/tcia/ACRIN-FLT-Breast_PT_a.dcm").read_bytes())
    meta = parsed.metadata
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"}
    assert "00020010" not in meta  # file meta is not part of the data set
    assert meta["00100020"]["Value"] == [str(parsed.dataset.PatientID)]
    text = str(meta)
    assert "InlineBinary" not in text or len(text) < 200_000
    assert canonical_sha256(meta) == parsed.content_sha256


def test_splice_keeps_every_other_byte(dicom_data):
    import io

    import numpy as np
    import pydicom

    from medvault.core.codecs import recompress
    from medvault.core.dicom.parse import splice_encapsulated_pixels

    data = (dicom_data / "dicom/single_ct/CT_small.dcm").read_bytes()  # ends with padding
    parsed = parse_instance(data)
    new, _ = recompress(parsed.dataset, parsed.pixels, "jpegls")
    out = splice_encapsulated_pixels(data, new.file_meta, bytes(new.PixelData))
    assert out is not None
    reread = pydicom.dcmread(io.BytesIO(out))
    assert reread.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    assert np.array_equal(reread.pixel_array, parsed.pixels[0])
    start = data.index(b"\x08\x00\x05\x00")  # first data set element, after the file meta
    pixel = data.rfind(b"\xe0\x7f\x10\x00OW")
    assert data[start:pixel] in out
    # Pixel Data that is not the last element (here: followed by a private tag): no splice.
    assert splice_encapsulated_pixels(data + b"\x09\x00\x10\x00LO\x02\x00ab", new.file_meta, b"") is None


@pytest.mark.parametrize("sample", ["single_ct/CT_small.dcm", "transfer_syntax/MR_small_RLE.dcm",
                                    "transfer_syntax/MR_small_jpeg_ls_lossless.dcm",
                                    "multiframe/emri_small.dcm", "transfer_syntax/image_dfl.dcm"])
def test_corrupted_bytes_give_a_reason_never_a_crash(shared_data, sample):
    """Flipped bytes and cuts anywhere: either a valid parse or DicomRejected, nothing else."""
    import numpy as np

    original = (shared_data / "dicom" / sample).read_bytes()
    rng = np.random.default_rng(7)
    for _ in range(40):
        data = bytearray(original)
        for position in rng.integers(132, len(data), size=int(rng.integers(1, 8))):
            data[position] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(132, len(data)))]
        try:
            parse_instance(bytes(data))
        except DicomRejected as exc:
            assert exc.reason


def test_unknown_vr_in_the_file_meta_is_rejected_not_raised(dicom_data):
    """Regression (found by the ingest fuzzer): a corrupt VR in a file meta element used to
    raise NotImplementedError when the file meta was rewritten."""
    ds = ct_small(dicom_data)
    ds.file_meta.SourceApplicationEntityTitle = "MODALITY1"
    data = part10(ds)
    element = b"\x02\x00\x16\x00AE"
    assert data.count(element) == 1
    with pytest.raises(DicomRejected, match="File Meta Information is malformed"):
        parse_instance(data.replace(element, b"\x02\x00\x16\x00A\xba"))
