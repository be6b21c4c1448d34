"""DIMSE event handlers: plain typed functions that tests call directly.

Each handler looks up the calling AE in :class:`~medvault.dimse.models.RemoteAE`, checks what
it may do, works through the archive's services and selectors, and writes an audit record.
"""

from __future__ import annotations

import logging
import socket
import weakref
from collections.abc import Iterator
from typing import Any

from django.db import OperationalError, connection
from django.db.models import QuerySet
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.events import Event

from medvault.accounts.audit import audit_record
from medvault.archive.access import visible_to
from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance
from medvault.archive.query.attributes import Level
from medvault.archive.query.elements import json_element, value_of
from medvault.archive.query.matching import QueryError
from medvault.archive.query.search import MatchKey, matchable, rows_matching
from medvault.archive.selectors import (
    LOSSLESS_OUT,
    TransferSyntaxUnavailable,
    instance_dataset_for_peer,
)
from medvault.dimse import conf
from medvault.dimse.association import nodelay_set, retrying
from medvault.dimse.models import RemoteAE
from medvault.dimse.status import STORE_FAILURE, Status

log = logging.getLogger(__name__)

# Transfer syntaxes that only MedVault may store (JPEG XL): sent decompressed.
_UNCOMMON_SYNTAXES = {"1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112"}
_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
_LEVELS = {"PATIENT": Level.PATIENT, "STUDY": Level.STUDY, "SERIES": Level.SERIES, "IMAGE": Level.IMAGE}
_PATIENT_ROOT = {"1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3"}
# Keys of the identifier that are not matching keys.
_NOT_MATCHING = {0x00080005, 0x00080052, 0x00080054, 0x00080056, 0x00081190}


_NOT_LOOKED_UP = object()
# Where the association remembers its remote AE (looked up once per association).
_REMOTE_AE_ATTRIBUTE = "_medvault_remote_ae"


def _addresses(host: str) -> set[str]:
    """The IP addresses a configured host name or address stands for (empty if unknown)."""
    try:
        infos = socket.getaddrinfo(host.strip(), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {_address_normalise(str(info[4][0])) for info in infos}


def _address_normalise(address: str) -> str:
    address = address.split("%", 1)[0]
    return address[7:] if address.lower().startswith("::ffff:") and "." in address else address


def host_matches(ae: RemoteAE, address: str) -> bool:
    """Whether a peer at ``address`` may use ``ae``'s title (``MEDVAULT_DICOM_CHECK_HOST``):
    it must come from the AE's configured host. On unless turned off."""
    if not conf.check_host():
        return True
    return _address_normalise(str(address)) in _addresses(ae.host)


def calling_ae(event: Event) -> RemoteAE | None:
    """The configured remote AE of this association, looked up once per association
    (not once per C-STORE: a modality sends hundreds on one association).

    ``None`` when the title is unknown, and also when a configured title calls from
    another host than the AE's (``host_matches``): then it is nobody's AE.
    """
    found = getattr(event.assoc, _REMOTE_AE_ATTRIBUTE, _NOT_LOOKED_UP)
    if found is _NOT_LOOKED_UP:
        title = str(event.assoc.requestor.ae_title).strip()
        found = RemoteAE.objects.filter(ae_title=title).select_related("group").first()
        if found is not None and not host_matches(found, event.assoc.requestor.address):
            log.warning("AE title %s called from %s, not from its host %s: treated as unknown",
                        title, event.assoc.requestor.address, found.host)
            found = None
        try:
            setattr(event.assoc, _REMOTE_AE_ATTRIBUTE, found)
        except AttributeError:
            pass  # an association object that takes no attributes: look it up every time
    return found  # type: ignore[return-value]


def _peer(event: Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.address}:{requestor.port}"


def _audit(event: Event, action: str, outcome: str = "ok", **fields: str) -> None:
    title = str(event.assoc.requestor.ae_title).strip()
    detail = fields.pop("detail", "")
    retrying(lambda: audit_record(user=None, action=action, outcome=outcome, remote_addr=_peer(event),
                                   detail=f"DIMSE AE {title}: {detail}"[:500], **fields))


def _db_fresh() -> None:
    """Drop this thread's database connection if an error left it unusable.

    Unlike Django's per-request ``close_old_connections`` this keeps a healthy connection for
    the whole association (closed in ``connection_close``) instead of reconnecting for every
    message when ``CONN_MAX_AGE`` is 0. Not inside a transaction: there the caller owns it.
    """
    if connection.in_atomic_block or connection.connection is None:
        return
    if connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


def handle_echo(event: Event) -> int:
    return int(Status.SUCCESS)


def _storeretrying(data: bytes, group: Any) -> Any:
    return retrying(lambda: instance_store(data=data, source="c-store", user=None, group=group))


def handle_store(event: Event) -> int | Dataset:
    _db_fresh()
    ae = calling_ae(event)
    if ae is not None and not ae.may_store:
        _audit(event, "upload", "denied", detail="C-STORE not allowed")
        return int(Status.NOT_AUTHORISED)
    data = event.encoded_dataset(include_meta=True)
    try:
        result = _storeretrying(data, ae.group if ae else None)
    except OperationalError as exc:
        _audit(event, "upload", "error", detail=f"C-STORE: database busy: {exc}")
        busy = Dataset()
        busy.Status = int(Status.STORE_OUT_OF_RESOURCES)
        busy.ErrorComment = "database busy; try again"
        return busy
    sop_uid = result.sop_instance_uid or ""
    inst = result.instance  # stored now or before (a duplicate); None when rejected
    if inst is not None:
        _audit(event, "upload", sop_uid=inst.sop_instance_uid,
               series_uid=inst.series.series_instance_uid,
               study_uid=inst.series.study.study_instance_uid, detail=f"C-STORE {result.status}")
        return int(Status.SUCCESS)
    reason = result.reason or "rejected"
    _audit(event, "upload", "error", sop_uid=sop_uid, detail=f"C-STORE rejected: {reason}")
    status = Dataset()
    assert result.reject is not None  # set on every rejected result
    status.Status = int(STORE_FAILURE[result.reject])
    status.ErrorComment = reason[:64]
    return status


def identifier_level(identifier: Dataset, model: str) -> Level:
    """The QueryRetrieveLevel of a C-FIND / C-GET / C-MOVE identifier.

    Raises
    ------
    QueryError
        When it is missing or unknown, or PATIENT outside the Patient Root model.
    """
    level_name = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level_name not in _LEVELS:
        raise QueryError(f"QueryRetrieveLevel {level_name!r} is not PATIENT, STUDY, SERIES or IMAGE")
    level = _LEVELS[level_name]
    if level is Level.PATIENT and model not in _PATIENT_ROOT:
        raise QueryError("the PATIENT level needs the Patient Root information model")
    return level


def identifier_keys(identifier: Dataset, level: Level) -> list[MatchKey]:
    """The matching keys of an identifier in the form QIDO-RS gives them too: each non-empty
    element the index can match at ``level``, its values joined by ``\\``. Return keys
    (empty), sequences and unknown attributes are not matched."""
    keys: list[MatchKey] = []
    for element in identifier:
        if element.tag in _NOT_MATCHING or element.VR == "SQ" or element.tag.group == 0x0000:
            continue
        attribute = matchable(level, f"{element.tag:08X}")
        if attribute is None:
            continue
        value = element.value
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple, MultiValue)):
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        keys.append((attribute, text))
    return keys


def find_rows(identifier: Dataset, principal: Any, model: str) -> tuple[Level, QuerySet[Any]]:
    """Rows of the index that match a C-FIND / C-GET / C-MOVE identifier, in the studies
    ``principal`` (the calling AE) may read: the archive's one search, as QIDO-RS runs it.

    Raises
    ------
    QueryError
        On a missing or unknown QueryRetrieveLevel, or an unparseable matching key.
    """
    level = identifier_level(identifier, model)
    return level, rows_matching(principal=principal, level=level, keys=identifier_keys(identifier, level))


def _response(identifier: Dataset, level: Level, row: Any, local_ae: str) -> Dataset:
    """The identifier echoed back with the values of this row filled in."""
    metadata: dict[str, Any] | None = None
    json_ds: dict[str, Any] = {}
    for element in identifier:
        tag = f"{element.tag:08X}"
        if element.tag in _NOT_MATCHING or element.tag.group == 0x0000:
            continue
        attribute = matchable(level, tag)
        if attribute is not None:
            json_ds[tag] = json_element(attribute, value_of(row, level, attribute))
            continue
        if level is Level.IMAGE:
            if metadata is None:
                metadata = Instance.objects.values_list("metadata", flat=True).get(pk=row.pk)
            found = metadata.get(tag)
            if isinstance(found, dict) and "BulkDataURI" not in found:
                json_ds[tag] = found
                continue
        json_ds[tag] = {"vr": element.VR}
    ds = Dataset.from_json(json_ds)
    ds.QueryRetrieveLevel = level.value
    ds.RetrieveAETitle = local_ae
    if "SpecificCharacterSet" in identifier or any(
        isinstance(e, dict) and e.get("vr") == "PN" for e in json_ds.values()
    ):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def handle_find(event: Event) -> Iterator[tuple[int, Dataset | None]]:
    _db_fresh()
    ae = calling_ae(event)
    if ae is None or not ae.may_query:
        _audit(event, "search", "denied", detail="C-FIND not allowed")
        yield int(Status.NOT_AUTHORISED), None
        return
    identifier = event.identifier
    try:
        level, qs = find_rows(identifier, ae, str(event.request.AffectedSOPClassUID))
    except QueryError as exc:
        _audit(event, "search", "error", detail=f"C-FIND: {exc}")
        yield int(Status.QR_IDENTIFIER_MISMATCH), None
        return
    _audit(event, "search", detail=f"C-FIND {level.value}")
    local_ae = str(event.assoc.acceptor.ae_title).strip()
    for row in qs.iterator(chunk_size=500):
        if event.is_cancelled:
            yield int(Status.CANCEL), None
            return
        yield int(Status.PENDING), _response(identifier, level, row, local_ae)
    yield int(Status.SUCCESS), None


def retrieve_instances(identifier: Dataset, principal: Any, model: str) -> list[Instance]:
    """The instances under the rows an identifier names (C-GET / C-MOVE), in the studies
    ``principal`` (the calling AE) may read."""
    level, qs = find_rows(identifier, principal, model)
    ids = qs.values("pk")
    base = Instance.objects.select_related("series", "series__study", "series__study__patient").defer("metadata")
    if level is Level.PATIENT:
        # A patient's studies in other groups stay out.
        insts = base.filter(series__study__patient__in=ids, series__study__in=visible_to(principal).values("pk"))
    elif level is Level.STUDY:
        insts = base.filter(series__study__in=ids)
    elif level is Level.SERIES:
        insts = base.filter(series__in=ids)
    else:
        insts = base.filter(pk__in=ids)
    return list(insts.order_by("series_id", "instance_number", "pk"))


def syntax_choose(accepted: set[str], stored: str) -> str | None:
    """The transfer syntax to send an instance in, given the syntaxes the peer accepted:
    the stored one; else native (decompressed); else a lossless codec we can encode
    (transcoded). None when the peer accepted nothing we can produce for it."""
    if stored in accepted and stored not in _UNCOMMON_SYNTAXES:
        return stored
    for native in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        if native in accepted:
            return native
    for lossless in sorted(accepted & set(LOSSLESS_OUT)):
        return lossless
    return None


def _accepted_syntaxes(assoc: Any, sop_class: str) -> set[str]:
    if assoc is None:
        return set()
    return {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if str(cx.abstract_syntax) == sop_class and cx.transfer_syntax
    }


def _sub_operations(
    event: Event, instances: list[Instance], assoc_of: Any, action: str
) -> Iterator[tuple[int, Dataset | None]]:
    failed: list[str] = []
    for inst in instances:
        if event.is_cancelled:
            ds = Dataset()
            ds.FailedSOPInstanceUIDList = failed
            yield int(Status.CANCEL), ds
            return
        accepted = _accepted_syntaxes(assoc_of(), inst.sop_class_uid)
        syntax = syntax_choose(accepted, inst.transfer_syntax_uid)
        try:
            try:
                ds = instance_dataset_for_peer(
                    instance=inst, transfer_syntax_uid=syntax or ExplicitVRLittleEndian
                )
            except TransferSyntaxUnavailable as exc:
                log.warning("%s for %s: %s", action, inst.sop_instance_uid, exc)
                syntax = None
                ds = instance_dataset_for_peer(instance=inst, transfer_syntax_uid=ExplicitVRLittleEndian)
            if syntax is None:
                # Nothing the peer accepted can be made of it: the native copy finds no
                # presentation context, and the association counts a failed sub-operation.
                log.warning("%s for %s: the peer accepted none of the syntaxes we can send "
                            "(%s for %s)", action, inst.sop_instance_uid, sorted(accepted),
                            inst.sop_class_uid)
        except (OSError, ValueError) as exc:
            log.error("cannot read %s for %s: %s", inst.sop_instance_uid, action, exc)
            failed.append(inst.sop_instance_uid)
            continue
        yield int(Status.PENDING), ds


def handle_get(event: Event) -> Iterator[Any]:
    _db_fresh()
    ae = calling_ae(event)
    if ae is None or not ae.may_retrieve:
        _audit(event, "download", "denied", detail="C-GET not allowed")
        yield 1
        yield int(Status.NOT_AUTHORISED), None
        return
    try:
        instances = retrieve_instances(event.identifier, ae, str(event.request.AffectedSOPClassUID))
    except QueryError as exc:
        _audit(event, "download", "error", detail=f"C-GET: {exc}")
        yield 1
        yield int(Status.QR_IDENTIFIER_MISMATCH), None
        return
    study_uids = {i.series.study.study_instance_uid for i in instances}
    _audit(event, "download", study_uid=next(iter(study_uids)) if len(study_uids) == 1 else "",
           detail=f"C-GET {len(instances)} instance(s)")
    yield len(instances)
    yield from _sub_operations(event, instances, lambda: event.assoc, "C-GET")


def move_contexts(instances: list[Instance]) -> list[Any]:
    """Presentation contexts for a C-MOVE sub-association: explicit and implicit VR little
    endian, and each stored syntax (JPEG XL excepted), per SOP class; at most 128."""
    pairs: dict[str, set[str]] = {}
    for inst in instances:
        pairs.setdefault(inst.sop_class_uid, set()).add(inst.transfer_syntax_uid)
    contexts = []
    for sop_class, syntaxes in sorted(pairs.items()):
        # Explicit and implicit VR in contexts of their own, so that a destination that takes
        # both gets explicit VR (the VRs of private attributes survive).
        contexts.append(build_context(sop_class, ExplicitVRLittleEndian))
        contexts.append(build_context(sop_class, ImplicitVRLittleEndian))
        for syntax in sorted(syntaxes - _UNCOMPRESSED - _UNCOMMON_SYNTAXES):
            contexts.append(build_context(sop_class, UID(syntax)))
    return contexts[:128]


def handle_move(event: Event) -> Iterator[Any]:
    _db_fresh()
    ae = calling_ae(event)
    destination_title = str(event.move_destination).strip()
    if ae is None or not ae.may_retrieve:
        _audit(event, "download", "denied", detail=f"C-MOVE to {destination_title} not allowed")
        yield None, None
        return
    destination = RemoteAE.objects.filter(ae_title=destination_title, may_retrieve=True).first()
    if destination is None:
        _audit(event, "download", "denied", detail=f"C-MOVE to unknown destination {destination_title}")
        yield None, None
        return
    if ae.group_id is not None and destination.group_id != ae.group_id:
        # A group's images go only to that group's AEs (a caller without a group is a
        # site-wide peer and may send anywhere configured). Answered as an unknown
        # destination: the other group's AE is not named.
        _audit(event, "download", "denied",
               detail=f"C-MOVE to {destination_title}: destination not in the caller's group")
        yield None, None
        return
    try:
        instances = retrieve_instances(event.identifier, ae, str(event.request.AffectedSOPClassUID))
    except QueryError as exc:
        _audit(event, "download", "error", detail=f"C-MOVE: {exc}")
        yield destination.host, destination.port
        yield 1
        yield int(Status.QR_IDENTIFIER_MISMATCH), None
        return
    holder: dict[str, Any] = {}

    def established(sub_event: Event) -> None:
        holder["assoc"] = sub_event.assoc

    yield destination.host, destination.port, {
        "contexts": move_contexts(instances) or [build_context("1.2.840.10008.1.1")],
        "evt_handlers": [(evt.EVT_CONN_OPEN, nodelay_set), (evt.EVT_ESTABLISHED, established)],
    }
    study_uids = {i.series.study.study_instance_uid for i in instances}
    _audit(event, "download", study_uid=next(iter(study_uids)) if len(study_uids) == 1 else "",
           detail=f"C-MOVE {len(instances)} instance(s) to {destination_title}")
    yield len(instances)
    yield from _sub_operations(event, instances, lambda: holder.get("assoc"), "C-MOVE")


# Associations whose N-ACTION (commitment request) was accepted and whose response has not
# gone out yet; weak, so a closed association leaves no trace.
_commitment_requested: weakref.WeakSet[Any] = weakref.WeakSet()


def handle_n_action(event: Event) -> tuple[int | Dataset, Dataset | None]:
    """N-ACTION of the Storage Commitment Push Model (PS3.4 J.3.2): check and record the
    request; the report follows on a new association (``medvault.dimse.commitment``)."""
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
        StorageCommitmentPushModel,
        StorageCommitmentPushModelInstance,
    )

    from medvault.dimse.commitment import (
        ACTION_REQUEST,
        CommitmentRequestError,
        commitment_record,
        commitment_request_parse,
    )

    _db_fresh()
    request = event.request
    if str(getattr(request, "RequestedSOPClassUID", "")) != StorageCommitmentPushModel:
        _audit(event, "storage-commitment", "error", detail="N-ACTION for another SOP class")
        return int(Status.NO_SUCH_SOP_CLASS), None
    ae = calling_ae(event)
    if ae is None or not ae.may_store:
        _audit(event, "storage-commitment", "denied", detail="storage commitment not allowed")
        return int(Status.NOT_AUTHORISED), None
    if str(getattr(request, "RequestedSOPInstanceUID", "")) != StorageCommitmentPushModelInstance:
        _audit(event, "storage-commitment", "error", detail="N-ACTION not for the well-known SOP instance")
        return int(Status.NO_SUCH_SOP_INSTANCE), None
    if event.action_type != ACTION_REQUEST:
        _audit(event, "storage-commitment", "error", detail=f"N-ACTION type {event.action_type}")
        return int(Status.NO_SUCH_ACTION), None
    try:
        try:
            info = event.action_information
        except Exception as exc:  # undecodable data set
            raise CommitmentRequestError(int(Status.INVALID_ARGUMENT_VALUE),
                                         f"cannot decode Action Information: {exc}") from None
        transaction_uid, pairs = commitment_request_parse(info)
    except CommitmentRequestError as exc:
        _audit(event, "storage-commitment", "error", detail=f"N-ACTION refused: {exc.comment}")
        failure = Dataset()
        failure.Status = exc.status
        failure.ErrorComment = exc.comment[:64]
        return failure, None
    record = retrying(lambda: commitment_record(ae=ae, transaction_uid=transaction_uid, pairs=pairs))
    _audit(event, "storage-commitment",
           detail=f"N-ACTION transaction {transaction_uid}: {len(pairs)} instance(s), record {record.pk}")
    _commitment_requested.add(event.assoc)
    return int(Status.SUCCESS), None


def commitment_response_sent(event: Event) -> None:
    """EVT_DIMSE_SENT: once an N-ACTION response has gone out, wake the report sender (the
    report must not overtake the response)."""
    assoc = event.assoc
    if assoc not in _commitment_requested:
        return
    if type(event.message).__name__ != "N_ACTION_RSP":
        return
    _commitment_requested.discard(assoc)
    sender = getattr(assoc.ae, "commitment_sender", None)
    if sender is not None:
        sender.wake()
