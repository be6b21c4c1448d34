"""Storage Commitment Push Model (PS3.4 Annex J), MedVault as SCP.

The N-ACTION handler (``handlers.handle_n_action``) checks the request with
:func:`commitment_request_parse` and writes a :class:`~medvault.dimse.models.StorageCommitment`
row before it answers. A :class:`CommitmentSender` thread in the DICOM server process then
decides each referenced instance (:func:`commitment_evaluate`), opens a new association to the
requesting AE's host and port (MedVault requests it, and proposes the Storage Commitment
context with SCP role selection) and sends the N-EVENT-REPORT. The rows are a queue of
``medvault.archive.jobs`` (``REPORTS``): a failed delivery is tried again with a doubling
delay, at most ``MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS`` times, and a report whose sender
died mid-delivery is taken over when its lease runs out.

Nothing a peer sends becomes a path: UIDs are only compared with database columns, and
blobs are read by the content address the archive recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from medvault.archive.access import visible_to
from medvault.archive.jobs import LeaseQueue, Outcome
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_blob_verified
from medvault.core.blobs import BlobCorrupt, BlobNotFound
from medvault.dimse import conf
from medvault.dimse.association import nodelay_set, retrying
from medvault.dimse.models import RemoteAE, StorageCommitment

log = logging.getLogger("medvault.dimse.commitment")

ACTION_REQUEST = 1  # Action Type ID: Request Storage Commitment (PS3.4 J.3.2)
EVENT_SUCCESS = 1  # Event Type ID: all committed (PS3.4 J.3.3)
EVENT_FAILURES = 2  # Event Type ID: complete, failures exist

# Failure Reason (0008,1197), PS3.3 C.14.1.1
REASON_PROCESSING_FAILURE = 0x0110
REASON_NO_SUCH_INSTANCE = 0x0112
REASON_RESOURCE_LIMITATION = 0x0213
REASON_CLASS_NOT_SUPPORTED = 0x0122
REASON_CLASS_INSTANCE_CONFLICT = 0x0119

MAX_ITEMS = 65535  # referenced instances in one request; more is refused (0x0213)
_RETRY_CAP_S = 3600.0
_LEASE_S = 300.0  # a claimed row is tried again after this long if its sender died
_IDLE_CHECK_S = 30.0  # how often an idle sender looks for rows another process queued
_STORAGE_CLASSES = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}


class CommitmentRequestError(ValueError):
    """A malformed N-ACTION: ``status`` is the DIMSE failure status to answer with."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def _uid(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise CommitmentRequestError(0x0115, f"{what} is missing")
    if not UID(text).is_valid:
        raise CommitmentRequestError(0x0115, f"{what} is not a valid UID")
    return text


def commitment_request_parse(info: Dataset | None) -> tuple[str, list[list[str]]]:
    """The Transaction UID and the ``[class, instance]`` pairs of an N-ACTION's Action
    Information (PS3.4 J.3.2.1.1).

    Raises
    ------
    CommitmentRequestError
        0x0115 Invalid argument value for a missing or invalid Transaction UID, a missing
        or empty Referenced SOP Sequence, or an item without a valid Referenced SOP Class
        UID and Instance UID; 0x0213 Resource limitation beyond ``MAX_ITEMS`` items.
    """
    if info is None:
        raise CommitmentRequestError(0x0115, "no Action Information")
    try:
        transaction_uid = _uid(info.get("TransactionUID"), "Transaction UID")
        sequence = info.get("ReferencedSOPSequence")
        if not sequence:
            raise CommitmentRequestError(0x0115, "Referenced SOP Sequence is missing or empty")
        if len(sequence) > MAX_ITEMS:
            raise CommitmentRequestError(0x0213, f"more than {MAX_ITEMS} referenced instances")
        pairs = []
        for number, item in enumerate(sequence, 1):
            pairs.append([
                _uid(item.get("ReferencedSOPClassUID"), f"item {number}: Referenced SOP Class UID"),
                _uid(item.get("ReferencedSOPInstanceUID"), f"item {number}: Referenced SOP Instance UID"),
            ])
    except CommitmentRequestError:
        raise
    except Exception as exc:  # pydicom decodes lazily: a broken element raises on access
        raise CommitmentRequestError(0x0115, f"cannot decode Action Information: {exc}") from None
    return transaction_uid, pairs


def commitment_record(*, ae: RemoteAE, transaction_uid: str, pairs: list[list[str]]) -> StorageCommitment:
    """Write the request durably; the delivery thread takes it from here."""
    return StorageCommitment.objects.create(
        transaction_uid=transaction_uid, remote_ae=ae, ae_title=ae.ae_title, requested=pairs,
        next_attempt_at=timezone.now(),
    )


def commitment_evaluate(*, ae: RemoteAE, pairs: list[list[str]]) -> dict[str, list[list[Any]]]:
    """Decide each referenced instance: committed only when MedVault holds the SOP instance
    in a study the AE may see (its group, as C-FIND/C-MOVE), with the same SOP class, and its
    blob reads back intact (hash equal to the recorded content address).

    Failure reasons: 0x0112 not held or not visible to this AE; 0x0122 not held and not a
    storage SOP class; 0x0119 held with another SOP class; 0x0110 blob missing, corrupt or
    unreadable. Nothing stored is altered.
    """
    uids = sorted({instance for _, instance in pairs})
    held: dict[str, Instance] = {}
    visible = visible_to(ae)
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        for inst in (
            Instance.objects.filter(sop_instance_uid__in=chunk, series__study__in=visible)
            .only("pk", "sop_instance_uid", "sop_class_uid", "blob_key", "transfer_syntax_uid", "stored_bytes")
        ):
            held[inst.sop_instance_uid] = inst
    intact: dict[str, bool] = {}
    committed: list[list[Any]] = []
    failed: list[list[Any]] = []
    for sop_class, sop_instance in pairs:
        found = held.get(sop_instance)
        if found is None:
            reason = REASON_NO_SUCH_INSTANCE if sop_class in _STORAGE_CLASSES else REASON_CLASS_NOT_SUPPORTED
            failed.append([sop_class, sop_instance, reason])
            continue
        if found.sop_class_uid != sop_class:
            failed.append([sop_class, sop_instance, REASON_CLASS_INSTANCE_CONFLICT])
            continue
        if sop_instance not in intact:
            intact[sop_instance] = _blob_intact(found)
        if intact[sop_instance]:
            committed.append([sop_class, sop_instance])
        else:
            failed.append([sop_class, sop_instance, REASON_PROCESSING_FAILURE])
    return {"committed": committed, "failed": failed}


def _blob_intact(inst: Instance) -> bool:
    try:
        instance_blob_verified(instance=inst)
    except BlobNotFound:
        log.error("storage commitment: the blob of %s is missing", inst.sop_instance_uid)
        return False
    except BlobCorrupt:
        log.error("storage commitment: the blob of %s is corrupt (run medvault scrub)", inst.sop_instance_uid)
        return False
    except Exception as exc:  # an unreachable object store: not committed now
        log.error("storage commitment: cannot read the blob of %s: %s", inst.sop_instance_uid, exc)
        return False
    return True


def report_dataset(*, transaction_uid: str, result: dict[str, list[list[Any]]],
                   retrieve_ae_title: str) -> tuple[int, Dataset]:
    """The Event Type ID and Event Information of the N-EVENT-REPORT (PS3.4 J.3.3.1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if result["committed"]:
        ds.RetrieveAETitle = retrieve_ae_title
        items = []
        for sop_class, sop_instance in result["committed"]:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            items.append(item)
        ds.ReferencedSOPSequence = items
    if result["failed"]:
        items = []
        for sop_class, sop_instance, reason in result["failed"]:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            item.FailureReason = int(reason)
            items.append(item)
        ds.FailedSOPSequence = items
        return EVENT_FAILURES, ds
    return EVENT_SUCCESS, ds


class DeliveryError(RuntimeError):
    pass


def report_send(*, local_ae_title: str, remote: RemoteAE, event_type: int, info: Dataset) -> None:
    """Open an association to ``remote`` and send one N-EVENT-REPORT; raise DeliveryError
    unless the peer answered it with Success."""
    ae = AE(ae_title=local_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    # We are the SCP of the SOP class but request the association: SCP/SCU role selection
    # (PS3.4 J.3.3, PS3.7 D.3.3.4).
    assoc = ae.associate(
        remote.host, remote.port, ae_title=remote.ae_title,
        ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)],
        evt_handlers=[(evt.EVT_CONN_OPEN, nodelay_set)],
    )
    if not assoc.is_established:
        what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
        raise DeliveryError(f"association to {remote.ae_title} at {remote.host}:{remote.port} {what}")
    try:
        if not any(str(cx.abstract_syntax) == StorageCommitmentPushModel for cx in assoc.accepted_contexts):
            raise DeliveryError(f"{remote.ae_title} did not accept the Storage Commitment context")
        status, _ = assoc.send_n_event_report(
            info, event_type, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        code = getattr(status, "Status", None)
        if code is None:
            raise DeliveryError("no N-EVENT-REPORT response (timeout or abort)")
        if int(code) != 0x0000:
            raise DeliveryError(f"N-EVENT-REPORT answered with status 0x{int(code):04X}")
    finally:
        if assoc.is_established:
            assoc.release()


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: the base, doubling, at most an hour."""
    base = conf.commitment_retry_seconds()
    return float(min(base * 2 ** max(attempts - 1, 0), _RETRY_CAP_S))


# The reports as a queue of ``medvault.archive.jobs``: a row stays ``pending`` while a sender
# holds it (``next_attempt_at`` is its lease, then its backoff); ``attempts`` counts claims,
# so a sender that dies mid-delivery still spends one of the bounded attempts.
REPORTS: LeaseQueue[StorageCommitment] = LeaseQueue(
    StorageCommitment,
    lease=lambda: _LEASE_S,
    attempts_max=conf.commitment_max_attempts,
    backoff=retry_delay,
    state="state",
    due="next_attempt_at",
    worker=None,
    error="last_error",
    error_max=2000,
    queued=StorageCommitment.State.PENDING,
    running=StorageCommitment.State.PENDING,
    done=StorageCommitment.State.DELIVERED,
    failed=StorageCommitment.State.FAILED,
    order=("next_attempt_at", "id"),
)


def commitment_deliver(pk: int, *, local_ae_title: str) -> StorageCommitment | None:
    """One delivery attempt of one row, if it is due and this process claims it."""
    claimed = retrying(lambda: REPORTS.claim(worker_id="", pk=pk))
    if claimed is None:
        return None
    record: StorageCommitment = claimed
    remote = record.remote_ae
    error = ""
    try:
        if remote is None:
            raise DeliveryError(f"remote AE {record.ae_title} is no longer configured")
        if record.result is None:
            result = commitment_evaluate(ae=remote, pairs=record.requested)
            record.result = result
            retrying(lambda: REPORTS.owned(record).update(result=result))
        event_type, info = report_dataset(transaction_uid=record.transaction_uid, result=record.result,
                                          retrieve_ae_title=local_ae_title)
        report_send(local_ae_title=local_ae_title, remote=remote, event_type=event_type, info=info)
    except Exception as exc:  # network, peer, database: recorded and tried again later
        error = f"{type(exc).__name__}: {exc}"[:2000] if not isinstance(exc, DeliveryError) else str(exc)
    counts = (f"{len(record.result['committed'])} committed, {len(record.result['failed'])} failed"
              if record.result is not None else "not evaluated")
    if not error:
        retrying(lambda: REPORTS.complete(record, delivered_at=timezone.now()))
        log.info("storage commitment %s from %s: report delivered (%s) after %d attempt(s)",
                 record.transaction_uid, record.ae_title, counts, record.attempts)
    else:
        outcome = retrying(lambda: REPORTS.retry(record, error=error, permanent=remote is None))
        if outcome is Outcome.FAILED:
            log.error("storage commitment %s from %s: report NOT delivered, giving up after %d attempt(s): %s",
                      record.transaction_uid, record.ae_title, record.attempts, error)
        else:
            log.warning("storage commitment %s from %s: attempt %d failed (%s); next in %.0f s",
                        record.transaction_uid, record.ae_title, record.attempts, error,
                        retry_delay(record.attempts))
    record.refresh_from_db()
    return record


def commitment_deliver_due(*, local_ae_title: str, limit: int = 50) -> int:
    """Attempt every due report (oldest due first); returns how many were attempted."""
    due = list(
        StorageCommitment.objects.filter(REPORTS.claimable(timezone.now()))
        .order_by(*REPORTS.order).values_list("pk", flat=True)[:limit]
    )
    attempted = 0
    for pk in due:
        if commitment_deliver(pk, local_ae_title=local_ae_title) is not None:
            attempted += 1
    return attempted


def _next_due_in() -> float:
    nxt = (StorageCommitment.objects.filter(state=StorageCommitment.State.PENDING)
           .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first())
    if nxt is None:
        return _IDLE_CHECK_S
    return max(0.0, min(_IDLE_CHECK_S, (nxt - timezone.now()).total_seconds()))


class CommitmentSender:
    """The delivery thread of one DICOM server process.

    Woken when an N-ACTION response has been sent; otherwise it sleeps until the next
    retry is due (at most ``_IDLE_CHECK_S``, to pick up rows another process or an earlier
    run of this one left pending). Rows are claimed with a lease, so several DICOM servers
    on one database never send the same report twice at once.
    """

    def __init__(self, local_ae_title: str) -> None:
        self.local_ae_title = local_ae_title
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medvault-commitment", daemon=True)

    def start(self) -> CommitmentSender:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                wait = _IDLE_CHECK_S
                try:
                    commitment_deliver_due(local_ae_title=self.local_ae_title)
                    wait = _next_due_in()
                except DatabaseError as exc:  # database restarted or failed over
                    log.warning("storage commitment sender: database error (%s); retrying", exc)
                    connections.close_all()
                    wait = 1.0
                except Exception:
                    log.exception("storage commitment sender: unexpected error")
                    connections.close_all()
                    wait = 5.0
                if wait > 0:
                    self._wake.wait(wait)
                else:
                    time.sleep(0)  # something is due now: go round again
        finally:
            connections.close_all()
