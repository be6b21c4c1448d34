"""/frames/<uid>/<n>.pixels: the grey frame in modality units for window/level in the browser."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from mvfixtures import png_bytes, sample_bytes
from pydicom.pixels import apply_modality_lut

pytestmark = pytest.mark.django_db

FRAME_UNREADABLE = "This image cannot be displayed: its stored pixel data cannot be read or decoded."


def test_values_are_hounsfield_units_as_int16(client, stored_ct, clinician_a):
    client.force_login(clinician_a)
    response = client.get(f"/frames/{stored_ct.sop_instance_uid}/0.pixels")
    assert response.status_code == 200 and response["X-Dtype"] == "int16"
    rows, cols = int(response["X-Rows"]), int(response["X-Columns"])
    values = np.frombuffer(response.content, dtype="<i2").reshape(rows, cols)
    ds = pydicom.dcmread(io.BytesIO(sample_bytes()))
    assert np.array_equal(values, apply_modality_lut(ds.pixel_array, ds))
    centre, width = map(float, response["X-Window"].split(","))
    assert width > 0 and response["X-Photometric"] == "MONOCHROME2"
    assert client.get(f"/frames/{stored_ct.sop_instance_uid}/1.pixels").status_code == 404


def test_only_for_who_may_see_the_study(client, stored_ct, clinician_b):
    client.force_login(clinician_b)
    assert client.get(f"/frames/{stored_ct.sop_instance_uid}/0.pixels").status_code == 404
    client.logout()
    assert client.get(f"/frames/{stored_ct.sop_instance_uid}/0.pixels").status_code == 302


def test_colour_frames_are_left_to_the_server(client, blob_dir, group_a, clinician_a):
    from PIL import Image

    from medvault.archive.uploads import image_store

    buffer = io.BytesIO()
    grey = np.asarray(Image.open(io.BytesIO(png_bytes(32))))
    Image.fromarray(np.dstack([grey, 255 - grey, grey // 2])).save(buffer, format="PNG")
    stored = image_store(data=buffer.getvalue(), patient_id="RGB-1", patient_name="Rgb^Png", modality="OT",
                         source="test", user=clinician_a, group=group_a)
    assert stored.status == "stored", stored.reason
    client.force_login(clinician_a)
    assert client.get(f"/frames/{stored.sop_instance_uid}/0.pixels").status_code == 415


def test_an_undecodable_frame_is_refused_in_words(client, stored_ct, clinician_a):
    """A frame whose stored pixels cannot be decoded answers 422 with a sentence, never the
    decoder's exception text (both the PNG and the values)."""
    import os

    from medvault.archive.blobstore import blob_store
    from medvault.ui.rendering import FRAME_CACHE, PNG_CACHE

    # Other tests store the same sample (the same content address): their decoded frames
    # must not stand in for this damaged blob.
    FRAME_CACHE.clear()
    PNG_CACHE.clear()
    path = blob_store()._path(stored_ct.blob_key)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-4000])  # Pixel Data cut short
    client.force_login(clinician_a)
    for suffix in ("png", "pixels"):
        response = client.get(f"/frames/{stored_ct.sop_instance_uid}/0.{suffix}")
        assert response.status_code == 422
        assert response.content.decode() == FRAME_UNREADABLE
