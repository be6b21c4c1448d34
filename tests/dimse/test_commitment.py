"""Storage Commitment Push Model with MedVault as SCP, against pynetdicom as the SCU.

The SCU sends N-ACTION to MedVault's running SCP and receives the N-EVENT-REPORT on its own
listening AE, on the association MedVault opens back to it. Real DICOM files from
../shared/data; nothing of MedVault is mocked.
"""

from __future__ import annotations

import io
import queue
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.contrib.auth.models import Group
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from medvault.accounts.models import AuditRecord
from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance
from medvault.dimse.association import nodelay_set
from medvault.dimse.models import RemoteAE, StorageCommitment
from medvault.dimse.status import Status

from .conftest import eventually, free_port

# A real CT series: 5 slices of one series (pcir.org sample set of pydicom's DICOMDIR test
# files; dicom_data holds it with or without ../shared).
SERIES = "dicom/series_dicomdir/98892001/CT5N"
WAIT_S = 120  # an upper bound for a report to arrive, not a timing assertion


@pytest.fixture
def ct_series(dicom_data: Path) -> list[bytes]:
    files = sorted((dicom_data / SERIES).iterdir())
    assert len(files) == 5
    return [f.read_bytes() for f in files]


class Listener:
    """The SCU's own AE, listening for N-EVENT-REPORTs (role selection accepted)."""

    def __init__(self, title: str, port: int, status: int = 0x0000) -> None:
        self.title, self.port, self.status = title, port, status
        self.reports: queue.Queue[tuple[int, Dataset, str]] = queue.Queue()
        self.server: Any = None

    def _on_report(self, event: Any) -> tuple[int, None]:
        self.reports.put((event.event_type, event.event_information, str(event.assoc.requestor.ae_title)))
        return self.status, None

    def start(self) -> Listener:
        ae = AE(ae_title=self.title)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def report(self) -> tuple[int, Dataset, str]:
        try:
            return self.reports.get(timeout=WAIT_S)
        except queue.Empty:
            pytest.fail(f"no N-EVENT-REPORT within {WAIT_S} s")


def _store(port: int, files: list[bytes], title: str = "TESTSCU") -> None:
    ae = AE(ae_title=title)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT")
    assert assoc.is_established
    for data in files:
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status == Status.SUCCESS
    assoc.release()


def _request(pairs: list[tuple[str, str]], transaction_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid or generate_uid()
    items = []
    for sop_class, sop_instance in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _n_action(port: int, info: Dataset | None, title: str = "TESTSCU", action_type: int = 1,
              instance_uid: str = StorageCommitmentPushModelInstance) -> int:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", evt_handlers=[(evt.EVT_CONN_OPEN, nodelay_set)])
    assert assoc.is_established
    status, _ = assoc.send_n_action(info, action_type, StorageCommitmentPushModel, instance_uid)
    assoc.release()
    return int(status.Status)


def _pairs(files: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        out.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    return out


def _settled(transaction_uid: str, until: Any = None) -> StorageCommitment:
    """The record once it is no longer pending (or ``until(record)`` holds): the row is
    written just after the peer answered, so a test that has the report may look early."""
    until = until or (lambda r: r.state != StorageCommitment.State.PENDING)

    def settled() -> StorageCommitment | None:
        record = StorageCommitment.objects.get(transaction_uid=transaction_uid)
        return record if until(record) else None

    record = eventually(settled, seconds=WAIT_S, pause=0.1)
    if record is None:
        last = StorageCommitment.objects.get(transaction_uid=transaction_uid)
        pytest.fail(f"storage commitment {transaction_uid} did not settle: {last.state}, {last.last_error}")
    return record


def _items(seq: Any) -> list[tuple[str, str]]:
    return [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in seq]


@pytest.fixture
def listener(scp: dict[str, Any]) -> Any:
    ae = RemoteAE.objects.get(ae_title="TESTSCU")
    lis = Listener("TESTSCU", ae.port).start()
    yield lis
    lis.stop()


def test_all_stored_instances_are_committed(scp: dict[str, Any], listener: Listener,
                                            ct_series: list[bytes]) -> None:
    _store(scp["port"], ct_series)
    pairs = _pairs(ct_series)
    request = _request(pairs)
    assert _n_action(scp["port"], request) == Status.SUCCESS
    event_type, info, caller = listener.report()
    assert caller.strip() == "MEDVAULT"
    assert event_type == 1
    assert info.TransactionUID == request.TransactionUID
    assert sorted(_items(info.ReferencedSOPSequence)) == sorted(pairs)
    assert "FailedSOPSequence" not in info
    record = _settled(request.TransactionUID)
    assert record.state == StorageCommitment.State.DELIVERED and record.delivered_at is not None
    assert record.attempts == 1 and record.last_error == ""
    assert AuditRecord.objects.filter(action="storage-commitment", outcome="ok",
                                      detail__contains=request.TransactionUID).exists()


def test_unknown_instance_and_class_mismatch_fail_with_their_reasons(
    scp: dict[str, Any], listener: Listener, ct_series: list[bytes]
) -> None:
    _store(scp["port"], ct_series[:3])
    pairs = _pairs(ct_series[:3])
    unknown = (CTImageStorage, generate_uid())
    mismatch = (MRImageStorage, pairs[1][1])  # a stored CT instance, asked for as MR
    never_stored = _pairs(ct_series[3:4])[0]  # a real instance MedVault does not hold
    request = _request([pairs[0], unknown, mismatch, pairs[2], never_stored])
    assert _n_action(scp["port"], request) == Status.SUCCESS
    event_type, info, _ = listener.report()
    assert event_type == 2
    assert sorted(_items(info.ReferencedSOPSequence)) == sorted([pairs[0], pairs[2]])
    failed = {(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)): int(i.FailureReason)
              for i in info.FailedSOPSequence}
    assert failed == {unknown: 0x0112, mismatch: 0x0119, never_stored: 0x0112}


def test_an_instance_outside_the_aes_group_is_not_committed(
    scp: dict[str, Any], listener: Listener, ct_series: list[bytes]
) -> None:
    """An AE bound to a group commits only what it may see (as C-FIND/C-MOVE)."""
    _store(scp["port"], ct_series[:1])  # TESTSCU has no group: the study has none
    RemoteAE.objects.filter(ae_title="TESTSCU").update(group=Group.objects.create(name="elsewhere"))
    pairs = _pairs(ct_series[:1])
    assert _n_action(scp["port"], _request(pairs)) == Status.SUCCESS
    event_type, info, _ = listener.report()
    assert event_type == 2
    assert [int(i.FailureReason) for i in info.FailedSOPSequence] == [0x0112]
    assert "ReferencedSOPSequence" not in info


def test_a_corrupt_blob_fails_with_processing_failure_and_is_left_alone(
    scp: dict[str, Any], listener: Listener, ct_series: list[bytes], blob_dir: Path
) -> None:
    _store(scp["port"], ct_series)
    pairs = _pairs(ct_series)
    victim = Instance.objects.get(sop_instance_uid=pairs[2][1])
    others = {i.sop_instance_uid: blob_store().get(i.blob_key)
              for i in Instance.objects.exclude(pk=victim.pk)}
    path = blob_dir / victim.blob_key[:2] / victim.blob_key[2:4] / victim.blob_key
    corrupt = bytearray(path.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    rows_before = list(Instance.objects.order_by("pk").values())

    assert _n_action(scp["port"], _request(pairs)) == Status.SUCCESS
    event_type, info, _ = listener.report()
    assert event_type == 2
    assert [(str(i.ReferencedSOPInstanceUID), int(i.FailureReason)) for i in info.FailedSOPSequence] == [
        (pairs[2][1], 0x0110)]
    assert sorted(_items(info.ReferencedSOPSequence)) == sorted(p for p in pairs if p != pairs[2])
    # Nothing stored was altered: the corrupt blob is still there as it was, the others and
    # every row are unchanged.
    assert path.read_bytes() == bytes(corrupt)
    assert {i.sop_instance_uid: blob_store().get(i.blob_key)
            for i in Instance.objects.exclude(pk=victim.pk)} == others
    assert list(Instance.objects.order_by("pk").values()) == rows_before


def test_unknown_ae_and_ae_without_may_store_are_refused(transactional_db: Any, blob_dir: Any,
                                                         settings: Any) -> None:
    from medvault.dimse.server import dicomserver_start

    settings.MEDVAULT_AUTO_ANALYSE = False
    RemoteAE.objects.create(ae_title="READONLY", host="127.0.0.1", port=free_port(), may_store=False)
    port = free_port()
    # Unknown AEs are accepted at association here (echo/store only), so the N-ACTION
    # itself must refuse them.
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=True)
    try:
        request = _request([(CTImageStorage, generate_uid())])
        assert _n_action(port, request, title="READONLY") == Status.NOT_AUTHORISED
        assert _n_action(port, request, title="STRANGER") == Status.NOT_AUTHORISED
    finally:
        server.shutdown()
    assert StorageCommitment.objects.count() == 0
    assert AuditRecord.objects.filter(action="storage-commitment", outcome="denied").count() == 2


def test_malformed_n_action_gets_a_dimse_failure_status(scp: dict[str, Any]) -> None:
    port = scp["port"]
    good = (CTImageStorage, generate_uid())
    no_transaction = _request([good])
    del no_transaction.TransactionUID
    bad_transaction = _request([good], transaction_uid="1.2.abc")
    no_sequence = Dataset()
    no_sequence.TransactionUID = generate_uid()
    empty_sequence = _request([])
    no_instance = _request([good])
    del no_instance.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    no_class = _request([good])
    del no_class.ReferencedSOPSequence[0].ReferencedSOPClassUID
    for info in (no_transaction, bad_transaction, no_sequence, empty_sequence, no_instance, no_class, None):
        assert _n_action(port, info) == Status.INVALID_ARGUMENT_VALUE
    assert _n_action(port, _request([good]), action_type=2) == Status.NO_SUCH_ACTION
    assert _n_action(port, _request([good]), instance_uid=generate_uid()) == Status.NO_SUCH_SOP_INSTANCE
    assert StorageCommitment.objects.count() == 0
    # The SCP is still serving.
    assert _n_action(port, _request([good])) == Status.SUCCESS


def test_the_report_is_delivered_once_the_scus_listener_is_up(
    scp: dict[str, Any], ct_series: list[bytes], settings: Any
) -> None:
    settings.MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS = 0.2
    _store(scp["port"], ct_series[:2])
    pairs = _pairs(ct_series[:2])
    request = _request(pairs)
    assert _n_action(scp["port"], request) == Status.SUCCESS  # nobody listens yet
    record = _settled(request.TransactionUID, until=lambda r: bool(r.last_error))  # attempts counts claims
    assert record.state == StorageCommitment.State.PENDING
    assert record.last_error and record.delivered_at is None

    lis = Listener("TESTSCU", RemoteAE.objects.get(ae_title="TESTSCU").port).start()
    try:
        event_type, info, _ = lis.report()
    finally:
        lis.stop()
    assert event_type == 1
    assert info.TransactionUID == request.TransactionUID
    assert sorted(_items(info.ReferencedSOPSequence)) == sorted(pairs)
    record = _settled(request.TransactionUID)
    assert record.state == StorageCommitment.State.DELIVERED
    assert record.attempts >= 2 and record.last_error == ""


def test_a_report_nobody_takes_is_given_up_after_the_attempts(
    scp: dict[str, Any], settings: Any
) -> None:
    settings.MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS = 0.05
    settings.MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS = 3
    request = _request([(CTImageStorage, generate_uid())])
    assert _n_action(scp["port"], request) == Status.SUCCESS
    record = _settled(request.TransactionUID)
    assert record.state == StorageCommitment.State.FAILED
    assert record.attempts == 3 and record.next_attempt_at is None and record.last_error
    assert record.result == {"committed": [], "failed": [[CTImageStorage, request.ReferencedSOPSequence[0]
                                                          .ReferencedSOPInstanceUID, 0x0112]]}


def test_admin_lists_commitments_and_queues_one_again(db: Any, admin_client: Any) -> None:
    ae = RemoteAE.objects.create(ae_title="MODALITY", host="127.0.0.1", port=104)
    record = StorageCommitment.objects.create(
        transaction_uid="1.2.3.4", remote_ae=ae, ae_title="MODALITY", requested=[["1.2", "1.2.3"]],
        state=StorageCommitment.State.FAILED, attempts=12, last_error="association rejected",
    )
    page = admin_client.get("/admin/dimse/storagecommitment/")
    assert page.status_code == 200
    assert b"1.2.3.4" in page.content and b"association rejected" in page.content
    assert admin_client.get(f"/admin/dimse/storagecommitment/{record.pk}/change/").status_code == 200
    response = admin_client.post("/admin/dimse/storagecommitment/", {
        "action": "deliver_again", "_selected_action": [record.pk]})
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.state == StorageCommitment.State.PENDING and record.attempts == 0
    assert record.next_attempt_at is not None
