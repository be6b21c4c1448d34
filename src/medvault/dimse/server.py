"""The DICOM SCP: an application entity bound to MedVault's handlers.

``dicomserver_start`` returns the running server so that tests and the management command
share one code path (like healthchecks' smtpd).
"""

from __future__ import annotations

import ssl
from typing import Any

from django.conf import settings
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.presentation import AllStoragePresentationContexts, StoragePresentationContexts

from medvault.dimse import handlers
from medvault.dimse.models import RemoteAE

_NOBODY = "\\"  # a calling AE title that cannot occur (backslash is not allowed in AE titles)


class MedvaultAE(AE):
    """An AE whose list of accepted calling AE titles is read from the database per association."""

    accept_unknown: bool = False

    @property  # type: ignore[override]
    def require_calling_aet(self) -> list[str]:
        if self.accept_unknown:
            return []
        titles = list(RemoteAE.objects.values_list("ae_title", flat=True))
        return titles or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # read from the database


def _audit_rejected(event: Any) -> None:
    from medvault.accounts.audit import audit_record

    requestor = event.assoc.requestor
    audit_record(user=None, action="associate", outcome="denied",
                 remote_addr=f"{requestor.address}:{requestor.port}",
                 detail=f"DIMSE association from unknown AE {str(requestor.ae_title).strip()}")


HANDLERS = [
    (evt.EVT_CONN_OPEN, handlers.nodelay_set),
    (evt.EVT_CONN_CLOSE, handlers.connection_close),
    (evt.EVT_REJECTED, _audit_rejected),
    (evt.EVT_C_ECHO, handlers.handle_echo),
    (evt.EVT_C_STORE, handlers.handle_store),
    (evt.EVT_C_FIND, handlers.handle_find),
    (evt.EVT_C_GET, handlers.handle_get),
    (evt.EVT_C_MOVE, handlers.handle_move),
]


def application_entity(*, ae_title: str | None = None, accept_unknown: bool | None = None) -> MedvaultAE:
    ae = MedvaultAE(ae_title=ae_title or settings.MEDVAULT_DICOM_AE_TITLE)
    ae.accept_unknown = (
        settings.MEDVAULT_DICOM_ACCEPT_UNKNOWN_AE if accept_unknown is None else accept_unknown
    )
    ae.maximum_associations = int(getattr(settings, "MEDVAULT_DICOM_MAX_ASSOCIATIONS", 32))
    ae.maximum_pdu_size = 0  # no limit on what we receive
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    # Storage: every storage SOP class in every transfer syntax (pydicom can store them all).
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    for sop_class in (
        PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet,
    ):
        ae.add_supported_context(sop_class)
    # C-GET sends instances back over the same association: the SCU proposes storage
    # contexts with SCP role; accept them.
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=True)
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
    return ae.start_server(address, block=block, evt_handlers=HANDLERS, ssl_context=tls_context())
