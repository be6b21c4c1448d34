"""STOW-RS of DICOM JSON metadata with bulk data parts (PS3.18 10.5.1.2.2)."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest

from medvault.archive.models import Instance
from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type

from .ctgen import ct_series
from .helpers import parts_of, value

pytestmark = pytest.mark.django_db

JSON = "application/dicom+json"


def _json_request(datasets: list[pydicom.Dataset], *, bulk_type: str = "application/octet-stream",
                  drop_bulk: bool = False) -> tuple[bytes, str]:
    items, bulk = [], []
    for n, ds in enumerate(datasets):
        def handler(element: pydicom.DataElement, n: int = n) -> str:
            uri = f"http://client.example/bulk/{n}/{element.tag:08X}"
            bulk.append((element.value, bulk_type, {"Content-Location": uri}))
            return uri

        items.append(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=handler))
    boundary = boundary_new()
    parts = [(json.dumps(items).encode(), JSON), *([] if drop_bulk else bulk)]
    return b"".join(multipart_build(parts, boundary)), multipart_content_type(boundary, JSON)


def _post(client, headers, body: bytes, ctype: str):
    return client.post("/dicomweb/studies", data=body, content_type=ctype,
                       HTTP_ACCEPT=JSON, **headers)


def test_json_and_bulk_data_store_bit_exact(blob_dir, no_analysis, client, clinician_a) -> None:
    files = ct_series(2, patient_id="PAT-J1", patient_name="Json^Jo", seed=7)
    sent = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    body, ctype = _json_request(sent)
    response = _post(client, clinician_a.headers, body, ctype)
    assert response.status_code == 200, response.content
    assert len(response.json()["00081199"]["Value"]) == 2
    for ds in sent:
        inst = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
        assert inst.source == "stow"
        url = (f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}")
        back = pydicom.dcmread(io.BytesIO(parts_of(client.get(url, **clinician_a.headers))[0]))
        assert np.array_equal(back.pixel_array, ds.pixel_array)
        meta = client.get(url + "/metadata", **clinician_a.headers).json()[0]
        assert value(meta, "00100020") == "PAT-J1" and value(meta, "00280010") == ds.Rows


def test_json_stow_errors(blob_dir, no_analysis, client, clinician_a) -> None:
    ds = pydicom.dcmread(io.BytesIO(ct_series(1, patient_id="PAT-J2", patient_name="Json^Err", seed=8)[0]))
    # Bulk data part missing: that instance fails (409, all failed), with the reason.
    body, ctype = _json_request([ds], drop_bulk=True)
    response = _post(client, clinician_a.headers, body, ctype)
    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"][0]
    assert value(failed, "00081197") == 0xC000 and value(failed, "00081155") == ds.SOPInstanceUID
    # Compressed bulk data is refused the same way, with a reason that says what to send.
    body, ctype = _json_request([ds], bulk_type="image/jls")
    response = _post(client, clinician_a.headers, body, ctype)
    assert response.status_code == 409 and "application/dicom" in json.dumps(response.json())
    # The metadata part is not JSON, or not first: 400 for the whole request.
    boundary = boundary_new()
    bad = b"".join(multipart_build([(b"{not json", JSON)], boundary))
    assert _post(client, clinician_a.headers, bad, multipart_content_type(boundary, JSON)).status_code == 400
    bad = b"".join(multipart_build([(b"\x00", "application/octet-stream")], boundary))
    assert _post(client, clinician_a.headers, bad, multipart_content_type(boundary, JSON)).status_code == 400
    assert not Instance.objects.exists()
    # Other part types stay 415.
    assert _post(client, clinician_a.headers, bad, multipart_content_type(boundary, "image/png")).status_code == 415
