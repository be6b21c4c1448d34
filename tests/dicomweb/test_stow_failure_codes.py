"""STOW-RS FailureReason comes from the kind of refusal, never from the words of its reason."""

from __future__ import annotations

import io

import pydicom
import pytest

from medvault.archive import duplicates
from medvault.archive.outcomes import RejectReason, StoreResult
from medvault.dicomweb import services
from medvault.dicomweb.services import STOW_FAILURE, FailureReason, stow_http_status

from .ctgen import ct_series
from .helpers import stow, value

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


def test_every_reject_reason_has_its_failure_reason() -> None:
    assert set(STOW_FAILURE) == set(RejectReason) == set(EXPECTED)
    assert {reason: int(code) for reason, code in STOW_FAILURE.items()} == EXPECTED
    assert all(isinstance(code, FailureReason) for code in STOW_FAILURE.values())


def test_http_status_from_counts() -> None:
    assert stow_http_status(stored=3, failed=0) == 200
    assert stow_http_status(stored=2, failed=1) == 202
    assert stow_http_status(stored=0, failed=2) == 409


def _reworded_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    # Words that name neither "differ" nor "conflict", which the doors once looked for.
    monkeypatch.setattr(duplicates, "OTHER_PIXELS", "SOP Instance UID is taken")
    monkeypatch.setattr(duplicates, "OTHER_METADATA", "SOP Instance UID is taken ({attributes})")
    monkeypatch.setattr(duplicates, "STORED_KEPT", "")


@pytest.mark.django_db
def test_a_reworded_conflict_is_still_0111(blob_dir, no_analysis, client, clinician_a, monkeypatch) -> None:
    _reworded_conflict(monkeypatch)
    files = ct_series(1, seed=21)
    assert stow(client, clinician_a.headers, files).status_code == 200
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    ds.PatientName = "Changed^Name"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    response = stow(client, clinician_a.headers, [buffer.getvalue()])
    assert response.status_code == 409
    [failed] = response.json()["00081198"]["Value"]
    assert value(failed, "00000902").startswith("SOP Instance UID is taken")
    assert value(failed, "00081197") == 0x0111


@pytest.mark.django_db
def test_words_of_a_conflict_do_not_make_one(blob_dir, no_analysis, client, clinician_a, monkeypatch) -> None:
    def refuse(items, **kwargs) -> list[StoreResult]:
        return [StoreResult.refused(
            RejectReason.INVALID, "processing failure: values differ, a conflict",
            sop_instance_uid=item.parsed.sop_instance_uid,
        ) for item in items]

    monkeypatch.setattr(services, "parsed_store_batch", refuse)
    response = stow(client, clinician_a.headers, ct_series(1, seed=22))
    assert response.status_code == 409
    assert value(response.json()["00081198"]["Value"][0], "00081197") == 0xC000
