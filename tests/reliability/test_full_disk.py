"""Full disk: the blob store on a small tmpfs. Uploads get a clear "storage full" (507), the
data stored before stays intact and readable, and uploads work again once space is freed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.contrib.auth.models import Group
from django.test import Client

from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance
from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MiB tmpfs (needs root / CAP_SYS_ADMIN, as in CI); skipped where mounting is denied."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                             str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _instance(n: int, shared_data: Path) -> bytes:
    ds = pydicom.dcmread(shared_data / "dicom" / "single_ct" / "CT_small.dcm")
    rng = np.random.default_rng(n)
    # Noise compresses badly, so each instance takes real space on the small disk.
    ds.PixelData = rng.integers(0, 4095, (ds.Rows, ds.Columns), dtype=np.uint16).astype(
        ds.pixel_array.dtype).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.55.{n}"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _stow(client: Client, headers: dict[str, str], data: bytes):
    boundary = boundary_new()
    body = b"".join(multipart_build([(data, "application/dicom")], boundary))
    return client.post("/dicomweb/studies", data=body,
                       content_type=multipart_content_type(boundary, "application/dicom"), **headers)


def test_full_blob_store_says_storage_full_and_keeps_earlier_data(
    shared_data: Path, small_fs: Path, settings
) -> None:
    from medvault.accounts.models import User
    from medvault.accounts.tokens import token_create

    settings.MEDVAULT_BLOB_DIR = small_fs / "blobs"
    group = Group.objects.create(name="Full Disk Dept")
    user = User.objects.create_user(username="fd-admin", password="Xx-unused-123",
                                    role="administrator", status="approved", is_superuser=True)
    user.groups.add(group)
    _, key = token_create(user=user)
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    client = Client(raise_request_exception=False)

    earlier = {}
    for n in range(3):
        data = _instance(n, shared_data)
        response = _stow(client, headers, data)
        assert response.status_code == 200, response.content[:300]
        earlier[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = data

    # Fill the disk, leaving less room than one more instance needs.
    filler = small_fs / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\xff" * 65536)
                handle.flush()
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - 8192))

    full = None
    for n in range(3, 10):
        response = _stow(client, headers, _instance(n, shared_data))
        if response.status_code != 200:
            full = response
            break
    assert full is not None, "the small disk never filled up"
    assert full.status_code == 507, full.content[:300]
    assert full.json()["error"].startswith("storage full")
    stored_before = Instance.objects.count()

    # Earlier data: every row still has its complete blob, and retrieval is bit-exact.
    store = blob_store()
    for inst in Instance.objects.all():
        assert hashlib.sha256(store.get(inst.blob_key)).hexdigest() == inst.blob_key
    for uid, sent in earlier.items():
        inst = Instance.objects.get(sop_instance_uid=uid)
        response = client.get(
            f"/dicomweb/studies/{inst.series.study.study_instance_uid}/series/"
            f"{inst.series.series_instance_uid}/instances/{uid}",
            HTTP_ACCEPT='multipart/related; type="application/dicom"; '
                        "transfer-syntax=1.2.840.10008.1.2.1", **headers)
        assert response.status_code == 200
        body = b"".join(response.streaming_content) if response.streaming else response.content
        from medvault.core.dicom.multipart import multipart_parse

        (part,) = multipart_parse(body, response["Content-Type"])
        got = pydicom.dcmread(io.BytesIO(part.content))
        assert got.PixelData == pydicom.dcmread(io.BytesIO(sent)).PixelData
    # No half-written temporary blob is left behind by the failed writes.
    tmp_dir = small_fs / "blobs" / "tmp"
    assert not tmp_dir.exists() or list(tmp_dir.iterdir()) == []

    # Space freed: uploads work again, without restarting anything.
    filler.unlink()
    response = _stow(client, headers, _instance(99, shared_data))
    assert response.status_code == 200, response.content[:300]
    assert Instance.objects.count() == stored_before + 1
