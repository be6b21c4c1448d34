"""WADO decompression swaps only the Pixel Data element: same data set as a full rewrite."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from medvault.archive import selectors
from medvault.archive.ingest import instance_store
from medvault.core.codecs import decompress_dataset
from medvault.core.dicom.parse import dataset_to_part10

from .helpers import ct_series

pytestmark = pytest.mark.django_db

EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("codec", ["jpegls", "jpeg2000", "htj2k"])
def test_decompressed_bytes_equal_a_full_rewrite(dicom_data, blob_dir, settings, codec, compression_inline):
    settings.MEDVAULT_COMPRESSION = codec
    data = ct_series(dicom_data, 1, seed=21)[0]
    inst = instance_store(data=data, source="test").instance
    assert inst.transfer_syntax_uid != EXPLICIT_LE
    out = selectors.instance_part10_bytes(instance=inst, transfer_syntax_uid=EXPLICIT_LE)
    spliced = pydicom.dcmread(io.BytesIO(out))
    full = pydicom.dcmread(io.BytesIO(dataset_to_part10(decompress_dataset(
        pydicom.dcmread(io.BytesIO(selectors.instance_blob(instance=inst)))
    ))))
    assert spliced.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert [(e.tag, e.VR, e.value) for e in spliced] == [(e.tag, e.VR, e.value) for e in full]
    assert np.array_equal(spliced.pixel_array, pydicom.dcmread(io.BytesIO(data)).pixel_array)


def test_colour_falls_back_to_the_full_rewrite(blob_dir):
    from pathlib import Path

    # pydicom's bundled (not downloaded) RGB sample: ../shared/data has no colour image.
    path = Path(pydicom.__file__).parent / "data/test_files/SC_rgb_small_odd.dcm"
    inst = instance_store(data=path.read_bytes(), source="test").instance
    out = selectors.instance_part10_bytes(instance=inst, transfer_syntax_uid=EXPLICIT_LE)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(path).pixel_array)
