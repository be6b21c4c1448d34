"""Issue 13, finding 8: STOW-RS parts are independent.

A deeply nested sequence answered 500, and ``[good, broken, good]`` stored the first part and
not the last. Now each part succeeds or fails on its own: partial success is 202 with a
FailedSOPSequence, nesting depth and element count have limits with a clear reason, and no
request answers 500.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from django.test import Client
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medvault.archive.models import Instance

from .helpers import stow

_SAMPLE = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"


def _instance(depth: int = 0) -> tuple[bytes, str]:
    """CT_small with new UIDs; ``depth`` > 0 adds a ContentSequence nested that deep."""
    ds = pydicom.dcmread(_SAMPLE)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if depth:
        inner = Dataset()
        inner.CodeValue = "X"
        for _ in range(depth):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = inner.ContentSequence
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 50 * depth + 1000))  # pydicom writes sequences recursively
    try:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    finally:
        sys.setrecursionlimit(old)
    return buffer.getvalue(), str(ds.SOPInstanceUID)


def _failed(body: dict) -> list[tuple[str, int, str]]:
    out = []
    for item in body.get("00081198", {}).get("Value", []):
        out.append((item["00081155"].get("Value", [""])[0], item["00081197"]["Value"][0],
                    (item.get("00000902", {}).get("Value") or [""])[0]))
    return out


@pytest.fixture
def client_a(clinician_a, blob_dir):
    client = Client()
    return client, clinician_a.headers


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [40, 400])
def test_good_nested_good_stores_both_good_parts(client_a, depth):
    client, headers = client_a
    (first, uid1), (nested, uid2), (last, uid3) = _instance(), _instance(depth), _instance()
    response = stow(client, headers, [first, nested, last])
    assert response.status_code == 202, response.content[:500]
    stored = set(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert {uid1, uid3} <= stored and uid2 not in stored
    [(uid, code, reason)] = _failed(response.json())
    assert code == 0xC000 and "nest" in reason.lower(), reason
    referenced = [i["00081155"]["Value"][0] for i in response.json()["00081199"]["Value"]]
    assert referenced == [uid1, uid3]


@pytest.mark.django_db
def test_garbage_part_between_good_parts(client_a):
    client, headers = client_a
    (first, uid1), (last, uid3) = _instance(), _instance()
    broken = first[:200] + b"\x00" * 50  # a truncated file
    response = stow(client, headers, [first, broken, last])
    assert response.status_code == 202, response.content[:500]
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) >= {uid1, uid3}
    assert len(_failed(response.json())) == 1


@pytest.mark.django_db
def test_element_count_limit_has_a_clear_reason(client_a, settings):
    settings.MEDVAULT_DICOM_MAX_ELEMENTS = 50  # CT_small has about 100 elements
    client, headers = client_a
    data, uid = _instance()
    response = stow(client, headers, [data])
    assert response.status_code == 409, response.content[:500]
    [(_, code, reason)] = _failed(response.json())
    assert "elements" in reason and "50" in reason, reason


@pytest.mark.django_db
def test_nesting_limit_is_a_setting(client_a, settings):
    settings.MEDVAULT_DICOM_MAX_DEPTH = 3
    client, headers = client_a
    ok, _ = _instance(2)
    too_deep, _ = _instance(5)
    response = stow(client, headers, [ok, too_deep])
    assert response.status_code == 202, response.content[:500]
    [(_, _, reason)] = _failed(response.json())
    assert "3" in reason and "nest" in reason.lower(), reason


@pytest.mark.django_db
def test_deeply_nested_through_the_ingest_service(blob_dir):
    """Every door (upload, C-STORE, CLI) goes through instance_parse: no exception escapes."""
    from medvault.archive.ingest import instance_store

    data, _ = _instance(3000)
    result = instance_store(data=data, source="test")
    assert result.status == "rejected" and "nest" in result.reason.lower()


def _json_stow(client: Client, headers: dict, items: list, depth_hint: int = 0):
    import json

    from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * depth_hint + 1000))
    try:
        raw = json.dumps(items).encode()
    finally:
        sys.setrecursionlimit(old)
    boundary = boundary_new()
    body = b"".join(multipart_build([(raw, "application/dicom+json")], boundary))
    return client.post("/dicomweb/studies", data=body,
                       content_type=multipart_content_type(boundary, "application/dicom+json"), **headers)


def _json_item(depth: int) -> dict:
    item = {
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.88.11"]},  # Basic Text SR
        "00080018": {"vr": "UI", "Value": [str(generate_uid())]},
        "0020000D": {"vr": "UI", "Value": [str(generate_uid())]},
        "0020000E": {"vr": "UI", "Value": [str(generate_uid())]},
        "00100020": {"vr": "LO", "Value": ["NEST-1"]},
    }
    inner: dict = {"00080100": {"vr": "SH", "Value": ["X"]}}
    for _ in range(depth):
        inner = {"0040A730": {"vr": "SQ", "Value": [inner]}}
    item.update(inner)
    return item


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [40, 600, 5000])
def test_json_stow_deeply_nested_is_a_clear_failure_never_500(client_a, depth):
    client, headers = client_a
    response = _json_stow(client, headers, [_json_item(depth)], depth_hint=depth)
    assert response.status_code in (400, 409), response.content[:500]
    assert "nest" in response.content.decode().lower()
