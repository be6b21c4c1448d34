"""The DIMSE handlers are plain functions: called here directly with stand-in events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from dicomweb.ctgen import ct_series
from django.contrib.auth.models import Group
from pydicom.dataset import Dataset

from medvault.archive.models import Instance, Study
from medvault.dimse import handlers
from medvault.dimse.models import RemoteAE
from medvault.dimse.status import Status

pytestmark = pytest.mark.django_db

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


class FakeEvent:
    """Just what the handlers read from a pynetdicom Event."""

    def __init__(self, title: str, identifier: Dataset | None = None, data: bytes = b"",
                 cancel_after: int | None = None) -> None:
        requestor = SimpleNamespace(ae_title=title, address="127.0.0.1", port=40000)
        self.assoc = SimpleNamespace(requestor=requestor, acceptor=SimpleNamespace(ae_title="MEDVAULT"))
        self.identifier = identifier
        self.request = SimpleNamespace(AffectedSOPClassUID=STUDY_ROOT_FIND)
        self._data = data
        self._cancel_after = cancel_after
        self.polls = 0

    @property
    def is_cancelled(self) -> bool:
        self.polls += 1
        return self._cancel_after is not None and self.polls > self._cancel_after

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        return self._data


@pytest.fixture
def stored(blob_dir: Any, settings: Any) -> list[Instance]:
    settings.MEDVAULT_AUTO_ANALYSE = False
    group = Group.objects.create(name="ct")
    RemoteAE.objects.create(ae_title="SCANNER", host="127.0.0.1", port=104, group=group)
    results = []
    for seed, pid in enumerate(("H-1", "H-2", "H-3")):
        (data,) = ct_series(1, patient_id=pid, patient_name=f"Handler^{pid}", seed=seed)
        status = handlers.handle_store(FakeEvent("SCANNER", data=data))
        assert status == Status.SUCCESS
    results = list(Instance.objects.all())
    assert {s.group.name for s in Study.objects.all()} == {"ct"}
    return results


def _query(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    for key, value in keys.items():
        setattr(ds, key, value)
    return ds


def test_find_yields_matches_then_success(stored: list[Instance]) -> None:
    out = list(handlers.handle_find(FakeEvent("SCANNER", _query(PatientID="H-*"))))
    assert [s for s, _ in out] == [Status.PENDING] * 3 + [Status.SUCCESS]
    assert sorted(ds.PatientID for _, ds in out[:-1]) == ["H-1", "H-2", "H-3"]


def test_find_stops_when_cancelled(stored: list[Instance]) -> None:
    event = FakeEvent("SCANNER", _query(PatientID="H-*"), cancel_after=1)
    out = list(handlers.handle_find(event))
    assert [s for s, _ in out] == [Status.PENDING, Status.CANCEL]


def test_get_stops_when_cancelled(stored: list[Instance]) -> None:
    event = FakeEvent("SCANNER", _query(PatientID="H-*"), cancel_after=1)
    event.assoc.accepted_contexts = []
    out = list(handlers.handle_get(event))
    assert out[0] == 3  # number of sub-operations
    assert out[1][0] == Status.PENDING
    assert out[-1][0] == Status.CANCEL
    assert not out[-1][1].FailedSOPInstanceUIDList


def test_store_conflict_and_garbage(stored: list[Instance]) -> None:
    (data,) = ct_series(1, patient_id="H-1", seed=0)  # same pixels, new UIDs: stored
    assert handlers.handle_store(FakeEvent("SCANNER", data=data)) == Status.SUCCESS
    status = handlers.handle_store(FakeEvent("SCANNER", data=b"\x00" * 200))
    assert status.Status == Status.STORE_CANNOT_UNDERSTAND and status.ErrorComment


def test_echo_and_syntax_choice() -> None:
    assert handlers.handle_echo(FakeEvent("X")) == Status.SUCCESS
    jpegls, explicit = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1"
    assert handlers.syntax_choose({jpegls, explicit}, jpegls) == jpegls
    assert handlers.syntax_choose({explicit}, jpegls) == explicit
    # JPEG XL is never sent (few peers decode it); nothing else accepted: nothing to send.
    assert handlers.syntax_choose({"1.2.840.10008.1.2.4.110"}, "1.2.840.10008.1.2.4.110") is None
    # Stored JPEG XL, peer took JPEG 2000 lossless only: transcoded (issue 16, finding 9).
    j2k = "1.2.840.10008.1.2.4.90"
    assert handlers.syntax_choose({j2k}, "1.2.840.10008.1.2.4.110") == j2k
    assert handlers.syntax_choose({"1.2.840.10008.1.2", j2k}, jpegls) == "1.2.840.10008.1.2"
    assert handlers.syntax_choose({"1.2.840.10008.1.2.4.50"}, jpegls) is None  # never lossy


def test_the_calling_ae_is_looked_up_once_per_association(blob_dir: Any, settings: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.MEDVAULT_AUTO_ANALYSE = False
    RemoteAE.objects.create(ae_title="MODALITY", host="127.0.0.1", port=104)
    event = FakeEvent("MODALITY")
    with CaptureQueriesContext(connection) as ctx:
        for seed in range(3):
            (event._data,) = ct_series(1, patient_id="ONCE", patient_name="Once^Only", seed=seed)
            assert handlers.handle_store(event) == Status.SUCCESS
    lookups = [q for q in ctx.captured_queries if "dimse_remoteae" in q["sql"]]
    assert len(lookups) == 1
