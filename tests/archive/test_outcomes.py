"""Every refusal of the archive says what kind it is (``RejectReason``), so that the doors
answer from the kind and not from the words of the reason.

Built on pydicom's bundled CT_small.dcm: runs without ../shared.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from core.dicom.helpers import zip_bytes
from django.contrib.auth.models import Group
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance
from medvault.archive.outcomes import RejectReason, StoreResult, StoreStatus
from medvault.archive.uploads import upload_store

pytestmark = pytest.mark.django_db


def _ct(**changes: object) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in changes.items():
        if keyword == "ContentSequence":
            ds.ContentSequence = value
        else:
            setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _nested(depth: int) -> Sequence:
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    return inner.ContentSequence


def _store(data: bytes, **kwargs: object) -> StoreResult:
    return instance_store(data=data, source="test", **kwargs)  # type: ignore[arg-type]


def test_stored_and_duplicate_carry_no_reject(blob_dir) -> None:
    data = _ct(SOPInstanceUID=generate_uid())
    first, again = _store(data), _store(data)
    assert (first.status, first.reject) == (StoreStatus.STORED, None)
    assert (again.status, again.reject) == (StoreStatus.DUPLICATE, None)
    assert first.status == "stored"  # a StrEnum: the JSON line and templates show the word


def test_conflicts(blob_dir) -> None:
    uid = generate_uid()
    assert _store(_ct(SOPInstanceUID=uid)).status is StoreStatus.STORED
    other_metadata = _store(_ct(SOPInstanceUID=uid, PatientName="Other^Name"))
    assert (other_metadata.status, other_metadata.reject) == (StoreStatus.REJECTED, RejectReason.CONFLICT)
    assert other_metadata.instance is None


def test_hierarchy_and_other_group(blob_dir) -> None:
    study = generate_uid()
    assert _store(_ct(SOPInstanceUID=generate_uid(), StudyInstanceUID=study)).status is StoreStatus.STORED
    moved = _store(_ct(SOPInstanceUID=generate_uid(), StudyInstanceUID=study, PatientID="SOMEONE-ELSE"))
    assert moved.reject is RejectReason.HIERARCHY_MISMATCH
    in_group_a = _ct(SOPInstanceUID=generate_uid(), StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    assert _store(in_group_a, group=Group.objects.create(name="a")).status is StoreStatus.STORED
    stranger = _store(in_group_a, group=Group.objects.create(name="b"))
    assert stranger.reject is RejectReason.OTHER_GROUP
    assert Instance.objects.count() == 2


def test_refusals_before_anything_is_stored(blob_dir, settings) -> None:
    ct = _ct(SOPInstanceUID=generate_uid())
    assert _store(b"not DICOM at all").reject is RejectReason.INVALID
    verification = _ct(SOPInstanceUID=generate_uid(), SOPClassUID="1.2.840.10008.1.1")
    assert _store(verification).reject is RejectReason.NOT_STORAGE_CLASS
    settings.MEDVAULT_DICOM_MAX_DEPTH = 3
    deep = _ct(SOPInstanceUID=generate_uid(), ContentSequence=_nested(5))
    assert _store(deep).reject is RejectReason.STRUCTURE_TOO_LARGE
    settings.MEDVAULT_MAX_IMAGE_PIXELS = 100  # CT_small is 128 x 128
    assert _store(ct).reject is RejectReason.TOO_LARGE
    settings.MEDVAULT_MAX_UPLOAD_BYTES = 1000
    [result] = upload_store(name="ct.dcm", data=ct, source="test")
    assert result.reject is RejectReason.TOO_LARGE
    assert Instance.objects.count() == 0


def test_upload_refusals(blob_dir) -> None:
    ct = _ct(SOPInstanceUID=generate_uid())
    nested = upload_store(name="outer.zip", data=zip_bytes({"inner.zip": zip_bytes({"a.dcm": ct})}), source="test")
    assert [r.reject for r in nested] == [RejectReason.NESTED_ZIP]
    slip = upload_store(name="slip.zip", data=zip_bytes({"../evil.dcm": ct}), source="test")
    assert [r.reject for r in slip] == [RejectReason.ZIP_REFUSED]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    [picture] = upload_store(name="a.png", data=png, source="test")
    assert picture.reject is RejectReason.IMAGE_FIELDS_MISSING
    assert Instance.objects.count() == 0


def test_a_result_cannot_be_rejected_without_a_kind() -> None:
    with pytest.raises(ValueError):
        StoreResult(StoreStatus.REJECTED, None, "no kind", None)
    with pytest.raises(ValueError):
        StoreResult(StoreStatus.STORED, "1.2.3", None, None, reject=RejectReason.INVALID)
    refused = StoreResult.refused(RejectReason.INVALID, "why", path="x.dcm")
    assert refused.as_dict() == {
        "path": "x.dcm", "status": "rejected", "sop_instance_uid": None, "reason": "why", "reject": "invalid",
    }
