"""The DICOM SCP: an application entity bound to MedVault's handlers.

``dicomserver_start`` returns the running server so that tests and the management command
share one code path (like healthchecks' smtpd).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from django.conf import settings
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import AllStoragePresentationContexts

# pynetdicom makes its SOP class names at import time (setattr), so mypy cannot see them.
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from medvault.dimse import association, conf, handlers
from medvault.dimse.commitment import CommitmentSender
from medvault.dimse.models import RemoteAE

_NOBODY = "\\"
# pynetdicom accepts, of the syntaxes a peer proposes in one presentation context, the first
# in OUR list. So our list is our preference: the lossless codecs we store and can encode
# (a C-GET peer proposing JPEG-LS then gets the stored JPEG-LS, not Implicit VR), then
# native, then lossless syntaxes we can only decode, then lossy ones last (accepted only when
# a peer offers nothing else in that context).
_PREFERRED = [
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Lossless
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
]
STORAGE_TRANSFER_SYNTAXES = [
    *[uid for uid in _PREFERRED if uid in ALL_TRANSFER_SYNTAXES],
    *[uid for uid in ALL_TRANSFER_SYNTAXES if uid not in _PREFERRED],
]  # a calling AE title that cannot occur (backslash is not allowed in AE titles)


class MedvaultAE(AE):
    """An AE whose list of accepted calling AE titles is read from the database per association."""

    accept_unknown: bool = False
    # Sends storage commitment reports; started by ``dicomserver_start``.
    commitment_sender: CommitmentSender | None = None

    @property
    def require_calling_aet(self) -> list[str]:
        if self.accept_unknown:
            return []
        peer = _negotiating_peer()
        if peer is None:
            titles = list(RemoteAE.objects.values_list("ae_title", flat=True))
            return titles or [_NOBODY]
        # Only the calling title is looked up (and its host resolved), not every AE's.
        address, title = peer
        ae = RemoteAE.objects.filter(ae_title=title).only("ae_title", "host").first()
        # MEDVAULT_DICOM_CHECK_HOST: a configured title from another host is refused like
        # an unknown one.
        if ae is None or not handlers.host_matches(ae, address):
            return [_NOBODY]
        return [ae.ae_title]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # read from the database

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        # The non-blocking server stops the storage commitment sender when it shuts down.
        if kwargs.get("server_class") is ThreadedAssociationServer:
            kwargs["server_class"] = MedvaultServer
        return super().make_server(*args, **kwargs)


def _negotiating_peer() -> tuple[str, str] | None:
    """(address, calling AE title) of the peer whose association request is being negotiated.

    pynetdicom negotiates an association in that association's own thread (an
    ``Association`` is a ``Thread``), which is where ``require_calling_aet`` is read.
    """
    from pynetdicom.association import Association

    current = threading.current_thread()
    if isinstance(current, Association) and current.is_acceptor:
        return str(current.requestor.address), str(current.requestor.ae_title).strip()
    return None


class MedvaultServer(ThreadedAssociationServer):
    """pynetdicom's threaded server; ``shutdown`` also stops the commitment sender."""

    def shutdown(self) -> None:
        super().shutdown()
        sender = getattr(self.ae, "commitment_sender", None)
        if sender is not None:
            sender.stop()


def _audit_rejected(event: Any) -> None:
    from medvault.accounts.audit import audit_record

    requestor = event.assoc.requestor
    audit_record(user=None, action="associate", outcome="denied",
                 remote_addr=f"{requestor.address}:{requestor.port}",
                 detail=f"DIMSE association from unknown AE {str(requestor.ae_title).strip()}")


# Every storage SOP class (each of pynetdicom's storage contexts names one).
STORAGE_SOP_CLASSES = [cx.abstract_syntax for cx in AllStoragePresentationContexts if cx.abstract_syntax]

HANDLERS: list[EventHandlerType] = [
    (evt.EVT_CONN_OPEN, association.nodelay_set),
    (evt.EVT_CONN_CLOSE, association.connection_close),
    (evt.EVT_REJECTED, _audit_rejected),
    (evt.EVT_C_ECHO, handlers.handle_echo),
    (evt.EVT_C_STORE, handlers.handle_store),
    (evt.EVT_C_FIND, handlers.handle_find),
    (evt.EVT_C_GET, handlers.handle_get),
    (evt.EVT_C_MOVE, handlers.handle_move),
    (evt.EVT_N_ACTION, handlers.handle_n_action),
    (evt.EVT_DIMSE_SENT, handlers.commitment_response_sent),
]


def application_entity(*, ae_title: str | None = None, accept_unknown: bool | None = None) -> MedvaultAE:
    ae = MedvaultAE(ae_title=ae_title or settings.MEDVAULT_DICOM_AE_TITLE)
    ae.accept_unknown = (
        settings.MEDVAULT_DICOM_ACCEPT_UNKNOWN_AE if accept_unknown is None else accept_unknown
    )
    ae.maximum_associations = conf.max_associations()
    ae.maximum_pdu_size = 0  # no limit on what we receive
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    # The called AE title must be ours (PS3.8 A-ASSOCIATE-RJ reason 7) unless switched off.
    ae.require_called_aet = conf.check_called_ae()
    # Storage: every storage SOP class in every transfer syntax (pydicom can store them all).
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, STORAGE_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    # Storage Commitment Push Model: we are the SCP (N-ACTION in); the report goes out on an
    # association we request (commitment.report_send). Default roles on the way in.
    ae.add_supported_context(StorageCommitmentPushModel)
    for sop_class in (
        PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet,
    ):
        ae.add_supported_context(sop_class)
    # C-GET sends instances back over the same association: the SCU proposes storage
    # contexts with SCP role; accept them.
    # Every storage class: the 128-context limit binds the requestor, not us.
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, STORAGE_TRANSFER_SYNTAXES, scp_role=True, scu_role=True)
    return ae


def tls_context() -> ssl.SSLContext | None:
    cert = settings.MEDVAULT_DICOM_TLS_CERT
    key = settings.MEDVAULT_DICOM_TLS_KEY
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=cert, keyfile=key or None)
    return context


def dicomserver_start(
    *,
    host: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    accept_unknown: bool | None = None,
    block: bool = False,
) -> Any:
    """Start the SCP; returns the ThreadedAssociationServer (``block=False``) or blocks."""
    ae = application_entity(ae_title=ae_title, accept_unknown=accept_unknown)
    address = (host or settings.MEDVAULT_DICOM_HOST, settings.MEDVAULT_DICOM_PORT if port is None else port)
    # Storage commitment reports go out from a thread of this process rather than the
    # worker: the DICOM server is what runs where the modalities can be reached.
    sender = CommitmentSender(str(ae.ae_title).strip())
    ae.commitment_sender = sender
    if block:
        sender.start()
        try:
            return ae.start_server(address, block=True, evt_handlers=HANDLERS, ssl_context=tls_context())
        finally:
            sender.stop()
    server = ae.start_server(address, block=False, evt_handlers=HANDLERS, ssl_context=tls_context())
    sender.start()
    return server
