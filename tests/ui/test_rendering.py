"""Viewer rendering: modality LUT, windows (stored, CT default, MR automatic, 8-bit), presets,
MONOCHROME1, multi-frame scrolling."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.test import Client
from mvfixtures import PASSWORD, sample_bytes, stored_sample
from PIL import Image

from medvault.ui import rendering


def test_window_to_uint8_maps_the_window_linearly():
    values = np.array([[-1000.0, -600.0, 0.0], [149.0, 150.0, 3000.0]], dtype=np.float32)
    image = rendering.window_to_uint8(values, center=0.0, width=300.0)
    assert image.tolist() == [[0, 0, 127], [254, 255, 255]]
    assert rendering.window_to_uint8(values, 0.0, 300.0, invert=True).tolist()[0][0] == 255


def test_auto_windows():
    ct = np.full((8, 8), -1000, dtype=np.float32)
    assert rendering.auto_window(ct, {}, "CT") == (40.0, 400.0)
    eight_bit = np.arange(64, dtype=np.float32).reshape(8, 8)
    assert rendering.auto_window(eight_bit, {"00280101": {"vr": "US", "Value": [8]}}, "OT") == (127.5, 256.0)
    rng = np.random.default_rng(0)
    mr = rng.normal(600, 100, (64, 64)).astype(np.float32)
    mr[0, 0] = 50000  # one hot pixel must not flatten the window
    center, width = rendering.auto_window(mr, {"00280101": {"vr": "US", "Value": [12]}}, "MR")
    assert 450 < center < 750 and 300 < width < 1000


def test_rescale_and_window_from_functional_groups():
    meta = {
        "52009229": {
            "vr": "SQ",
            "Value": [
                {
                    "00289145": {
                        "vr": "SQ",
                        "Value": [{"00281053": {"vr": "DS", "Value": [2]}, "00281052": {"vr": "DS", "Value": [-1024]}}],
                    },
                    "00289132": {
                        "vr": "SQ",
                        "Value": [{"00281050": {"vr": "DS", "Value": [40]}, "00281051": {"vr": "DS", "Value": [400]}}],
                    },
                }
            ],
        }
    }
    assert rendering.rescale(meta, 0) == (2.0, -1024.0)
    assert rendering.stored_window(meta, 0) == (40.0, 400.0)


@pytest.mark.django_db
def test_ct_frame_in_hounsfield_with_presets(blob_dir, group_a, clinician_a):
    from pydicom import dcmread

    instance = stored_sample(group_a, clinician_a)
    rendering.FRAME_CACHE.clear()
    values = rendering.modality_frame(instance, 0)
    ds = dcmread(io.BytesIO(sample_bytes()))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.allclose(values, expected)
    png, _, used = rendering.render_frame_png(instance, 0, *rendering.CT_PRESETS["lung"])
    assert used == (-600.0, 1500.0)
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (ds.Rows, ds.Columns)
    assert np.array_equal(image, rendering.window_to_uint8(expected.astype(np.float32), -600.0, 1500.0))


@pytest.mark.django_db
def test_multiframe_series_scrolls_through_every_frame(shared_data, blob_dir, group_a, clinician_a):
    from medvault.archive.uploads import upload_store

    data = (shared_data / "dicom" / "multiframe" / "emri_small.dcm").read_bytes()
    [result] = upload_store(name="emri_small.dcm", data=data, source="test", user=clinician_a, group=group_a)
    assert result.status == "stored", result.reason
    instance = result.instance
    client = Client()
    assert client.login(username=clinician_a.username, password=PASSWORD)
    page = client.get(f"/viewer/{instance.series.study.study_instance_uid}/").content.decode()
    config = json.loads(page.split('id="viewer-config" type="application/json">')[1].split("</script>")[0])
    assert [f["frame"] for f in config["frames"]] == list(range(instance.number_of_frames))
    frames = {
        client.get(f"/frames/{instance.sop_instance_uid}/{i}.png").content for i in range(instance.number_of_frames)
    }
    assert len(frames) > 1  # the frames differ
    assert client.get(f"/frames/{instance.sop_instance_uid}/{instance.number_of_frames}.png").status_code == 404


@pytest.mark.django_db
def test_png_upload_renders_with_full_8bit_range(blob_dir, group_a, clinician_a):
    from mvfixtures import png_bytes

    from medvault.archive.uploads import upload_store

    [result] = upload_store(name="x.png", data=png_bytes(), source="test", user=clinician_a, group=group_a,
                            image_fields={"patient_id": "SYN-2", "patient_name": "Syn^Two", "modality": "OT"})
    assert result.status == "stored", result.reason
    png, info, used = rendering.render_frame_png(result.instance, 0)
    assert used == (127.5, 256.0)
    original = np.asarray(Image.open(io.BytesIO(png_bytes())))
    shown = np.asarray(Image.open(io.BytesIO(png)))
    assert np.abs(shown.astype(int) - original.astype(int)).max() <= 1


@pytest.mark.django_db
def test_zip_upload_through_the_web(blob_dir, group_a, clinician_a):
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/CT_small.dcm", sample_bytes())
        archive.writestr("b/MR_small.dcm", sample_bytes("MR_small.dcm"))
        archive.writestr("readme.txt", "not an image")
    client = Client()
    client.force_login(clinician_a)
    r = client.post("/upload/file", {"file": SimpleUploadedFile("batch.zip", buffer.getvalue()), "group": group_a.pk})
    statuses = sorted(x["status"] for x in r.json()["results"])
    assert statuses.count("stored") == 2, r.json()
