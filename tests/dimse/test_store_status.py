"""The C-STORE status comes from the kind of refusal, never from the words of its reason."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
from dicomweb.ctgen import ct_series
from django.contrib.auth.models import Group

from medvault.archive import duplicates
from medvault.archive.outcomes import RejectReason, StoreResult
from medvault.dimse import handlers
from medvault.dimse.models import RemoteAE
from medvault.dimse.status import STORE_FAILURE, Status

from .test_handlers import FakeEvent

EXPECTED = {
    RejectReason.CONFLICT: 0x0111,
    RejectReason.OTHER_GROUP: 0x0124,
    RejectReason.PROCESSING_FAILURE: 0x0110,
    RejectReason.HIERARCHY_MISMATCH: 0xC000,
    RejectReason.INVALID: 0xC000,
    RejectReason.NOT_STORAGE_CLASS: 0xC000,
    RejectReason.TOO_LARGE: 0xC000,
    RejectReason.STRUCTURE_TOO_LARGE: 0xC000,
    RejectReason.ZIP_REFUSED: 0xC000,
    RejectReason.NESTED_ZIP: 0xC000,
    RejectReason.IMAGE_FIELDS_MISSING: 0xC000,
    RejectReason.UNREADABLE_FILE: 0xC000,
}


def test_every_reject_reason_has_its_status() -> None:
    assert set(STORE_FAILURE) == set(RejectReason) == set(EXPECTED)
    assert {reason: int(code) for reason, code in STORE_FAILURE.items()} == EXPECTED


@pytest.fixture
def scanner(blob_dir: Any, settings: Any) -> None:
    settings.MEDVAULT_AUTO_ANALYSE = False
    RemoteAE.objects.create(ae_title="SCANNER", host="127.0.0.1", port=104, group=Group.objects.create(name="ct"))


@pytest.mark.django_db
def test_a_reworded_conflict_is_still_0111(scanner: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Words that name neither "differ" nor "conflict", which the handler once looked for.
    monkeypatch.setattr(duplicates, "OTHER_PIXELS", "SOP Instance UID is taken")
    monkeypatch.setattr(duplicates, "OTHER_METADATA", "SOP Instance UID is taken ({attributes})")
    monkeypatch.setattr(duplicates, "STORED_KEPT", "")
    (data,) = ct_series(1, seed=31)
    assert handlers.handle_store(FakeEvent("SCANNER", data=data)) == Status.SUCCESS
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientName = "Changed^Name"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    status = handlers.handle_store(FakeEvent("SCANNER", data=buffer.getvalue()))
    assert status.Status == Status.DUPLICATE_SOP_INSTANCE
    assert status.ErrorComment.startswith("SOP Instance UID is taken")


@pytest.mark.django_db
def test_words_of_a_conflict_do_not_make_one(scanner: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> StoreResult:
        return StoreResult.refused(RejectReason.INVALID, "values differ, a conflict")

    monkeypatch.setattr(handlers, "instance_store", refuse)
    (data,) = ct_series(1, seed=32)
    status = handlers.handle_store(FakeEvent("SCANNER", data=data))
    assert status.Status == Status.STORE_CANNOT_UNDERSTAND
