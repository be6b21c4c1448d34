"""Lossless re-encoding is bit-exact for every codec, and decodes back through our API."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from medvault.core.codecs import CODECS, decode_pixels, decompress_dataset, recompress
from medvault.core.dicom.parse import dataset_to_part10, parse_instance

SAMPLES = ["single_ct/CT_small.dcm", "single_mr/MR2_UNCR.dcm", "multiframe/emri_small.dcm"]


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("sample", SAMPLES)
def test_round_trip_is_bit_exact(shared_data, codec, sample):
    parsed = parse_instance((shared_data / "dicom" / sample).read_bytes())
    original = parsed.pixels
    new, reason = recompress(parsed.dataset, original, codec)
    if new is None:
        # Only the documented refusal: JPEG-XL does not take signed samples.
        assert codec == "jpegxl" and original.dtype.kind == "i", reason
        return
    assert new.file_meta.TransferSyntaxUID == CODECS[codec].transfer_syntax_uid
    # The original data set was not changed by re-encoding.
    assert parsed.dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    reread = pydicom.dcmread(io.BytesIO(dataset_to_part10(new)))
    assert len(reread.PixelData) < parsed.raw_pixel_bytes
    decoded = decode_pixels(reread)
    assert decoded.dtype == original.dtype and np.array_equal(decoded, original)
    native = decompress_dataset(reread)
    assert native.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(decode_pixels(native), original)


def test_mismatch_keeps_input(shared_data, monkeypatch):
    """A codec whose round trip differs is refused: the caller keeps the input."""
    from medvault.core.codecs import lossless

    parsed = parse_instance((shared_data / "dicom/single_ct/CT_small.dcm").read_bytes())
    real = lossless._decode_encapsulated
    monkeypatch.setattr(lossless, "_decode_encapsulated", lambda ts, ds: real(ts, ds) + 1)
    new, reason = recompress(parsed.dataset, parsed.pixels, "jpegls")
    assert new is None and "differed" in reason
