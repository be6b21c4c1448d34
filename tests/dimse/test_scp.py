"""The DICOM SCP against pynetdicom as SCU: echo, store, find, get and move, bit-exact."""

from __future__ import annotations

import io
import socket
import threading
from typing import Any

import numpy as np
import pydicom
import pytest
from dicomweb.ctgen import ct_series
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from medvault.accounts.models import AuditRecord
from medvault.archive.models import Instance
from medvault.dimse.association import nodelay_set
from medvault.dimse.models import RemoteAE
from medvault.dimse.status import Status

from .conftest import eventually, free_port

NODELAY = [(evt.EVT_CONN_OPEN, nodelay_set)]


def _scu(title: str = "TESTSCU") -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def _associate(ae: AE, port: int, **kwargs: Any) -> Any:
    return ae.associate("127.0.0.1", port, ae_title="MEDVAULT", evt_handlers=NODELAY, **kwargs)


def test_echo_and_unknown_ae_rejected(scp: dict[str, Any]) -> None:
    ae = _scu()
    ae.add_requested_context(Verification)
    assoc = _associate(ae, scp["port"])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == Status.SUCCESS
    # Nagle's algorithm is off on the SCP's side of the association.
    (server_side,) = scp["server"].active_associations
    sock = server_side.dul.socket.socket
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assoc.release()

    stranger = _scu("STRANGER")
    stranger.add_requested_context(Verification)
    assoc = _associate(stranger, scp["port"])
    assert assoc.is_rejected
    # The SCP writes the audit record just after it has sent the rejection.
    if not eventually(lambda: AuditRecord.objects.filter(
            action="associate", outcome="denied", detail__contains="STRANGER").exists(), seconds=2.5):
        pytest.fail("no audit record for the rejected association")


def _store(port: int, files: list[bytes]) -> list[int]:
    ae = _scu()
    ae.add_requested_context(CTImageStorage)
    assoc = _associate(ae, port)
    assert assoc.is_established
    statuses = []
    for data in files:
        statuses.append(assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status)
    assoc.release()
    return statuses


def _find(port: int, model: Any, query: Dataset, title: str = "TESTSCU") -> tuple[list[Dataset], int]:
    ae = _scu(title)
    ae.add_requested_context(model)
    assoc = _associate(ae, port)
    results, final = [], -1
    for status, identifier in assoc.send_c_find(query, model):
        if status.Status in (Status.PENDING, Status.PENDING_WARNING):
            results.append(identifier)
        else:
            final = status.Status
    assoc.release()
    return results, final


@pytest.mark.slow
def test_store_find_get_move_100_instance_series(scp: dict[str, Any]) -> None:
    port = scp["port"]
    files = ct_series(100, patient_id="DIMSE-1", patient_name="Moves^Mary", seed=7)
    originals = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(io.BytesIO(f)) for f in files)}
    first = next(iter(originals.values()))
    assert _store(port, files) == [Status.SUCCESS] * 100
    assert Instance.objects.filter(source="c-store").count() == 100
    # Sending it again is a harmless duplicate.
    assert _store(port, files[:2]) == [Status.SUCCESS] * 2

    # C-FIND at every level, with wildcard and range matching.
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientName = "moves*"
    q.PatientID = ""
    found, final = _find(port, PatientRootQueryRetrieveInformationModelFind, q)
    assert final == Status.SUCCESS
    assert [(str(d.PatientName), d.PatientID) for d in found] == [("Moves^Mary", "DIMSE-1")]
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = "DIMSE-?"
    q.StudyDate = f"{first.StudyDate}-"
    q.StudyInstanceUID = ""
    q.NumberOfStudyRelatedInstances = ""
    q.ModalitiesInStudy = ""
    found, _ = _find(port, StudyRootQueryRetrieveInformationModelFind, q)
    assert len(found) == 1
    assert found[0].StudyInstanceUID == first.StudyInstanceUID
    assert int(found[0].NumberOfStudyRelatedInstances) == 100
    q.StudyDate = "19000101-19001231"
    assert _find(port, StudyRootQueryRetrieveInformationModelFind, q)[0] == []
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = first.StudyInstanceUID
    q.SeriesInstanceUID = ""
    q.Modality = "CT"
    found, _ = _find(port, StudyRootQueryRetrieveInformationModelFind, q)
    assert [d.SeriesInstanceUID for d in found] == [first.SeriesInstanceUID]
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = first.StudyInstanceUID
    q.SeriesInstanceUID = first.SeriesInstanceUID
    q.SOPInstanceUID = ""
    q.InstanceNumber = ""
    q.SliceLocation = ""  # not indexed: answered from the stored metadata
    found, _ = _find(port, StudyRootQueryRetrieveInformationModelFind, q)
    assert len(found) == 100
    assert {d.SOPInstanceUID for d in found} == set(originals)
    assert found[0].SliceLocation == originals[found[0].SOPInstanceUID].SliceLocation

    # C-GET the series back over the same association.
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    ae = _scu()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[*NODELAY, (evt.EVT_C_STORE, on_store)])
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = first.StudyInstanceUID
    q.SeriesInstanceUID = first.SeriesInstanceUID
    statuses = [s.Status for s, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == Status.SUCCESS
    _assert_bit_exact(received, originals)

    # C-MOVE to a storage SCP the test runs; it must be a known destination.
    moved: list[Dataset] = []
    dest_port = free_port()
    RemoteAE.objects.create(ae_title="TESTSTORE", host="127.0.0.1", port=dest_port)
    store_ae = _scu("TESTSTORE")
    store_ae.supported_contexts = StoragePresentationContexts
    lock = threading.Lock()

    def on_moved(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with lock:
            moved.append(ds)
        return 0x0000

    store_server = store_ae.start_server(("127.0.0.1", dest_port), block=False,
                                         evt_handlers=[(evt.EVT_C_STORE, on_moved)])
    try:
        ae = _scu()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = _associate(ae, port)
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = first.StudyInstanceUID
        responses = list(assoc.send_c_move(q, "TESTSTORE", StudyRootQueryRetrieveInformationModelMove))
        final = responses[-1][0]
        assert final.Status == Status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 100
        bad = list(assoc.send_c_move(q, "NOWHERE", StudyRootQueryRetrieveInformationModelMove))
        assert bad[-1][0].Status == Status.MOVE_DESTINATION_UNKNOWN
        assoc.release()
    finally:
        store_server.shutdown()
    _assert_bit_exact(moved, originals)
    assert AuditRecord.objects.filter(action="download", detail__contains="C-MOVE 100").exists()
    assert AuditRecord.objects.filter(action="upload", detail__contains="C-STORE stored").count() == 100


def _assert_bit_exact(received: list[Dataset], originals: dict[str, Dataset]) -> None:
    assert sorted(d.SOPInstanceUID for d in received) == sorted(originals)
    for ds in received:
        original = originals[ds.SOPInstanceUID]
        assert np.array_equal(ds.pixel_array, original.pixel_array)
        assert ds.pixel_array.dtype == original.pixel_array.dtype
        for keyword in ("PatientName", "PatientID", "StudyDate", "InstanceNumber", "RescaleIntercept",
                        "ImagePositionPatient", "WindowCenter"):
            assert ds.get(keyword) == original.get(keyword), keyword


def test_permissions_and_bad_identifiers(scp: dict[str, Any]) -> None:
    port = scp["port"]
    RemoteAE.objects.create(ae_title="NOQUERY", host="127.0.0.1", port=104, may_query=False, may_store=False)
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    assert _find(port, StudyRootQueryRetrieveInformationModelFind, q, "NOQUERY") == ([], Status.NOT_AUTHORISED)
    q.QueryRetrieveLevel = "BOGUS"
    assert _find(port, StudyRootQueryRetrieveInformationModelFind, q)[1] == Status.QR_IDENTIFIER_MISMATCH
    q.QueryRetrieveLevel = "PATIENT"  # not in the Study Root model
    assert _find(port, StudyRootQueryRetrieveInformationModelFind, q)[1] == Status.QR_IDENTIFIER_MISMATCH
    q.QueryRetrieveLevel = "STUDY"
    q.StudyDate = "not-a-date"
    assert _find(port, StudyRootQueryRetrieveInformationModelFind, q)[1] == Status.QR_IDENTIFIER_MISMATCH
    # A store from an AE that may not store, and garbage from one that may.
    ae = _scu("NOQUERY")
    ae.add_requested_context(CTImageStorage)
    assoc = _associate(ae, port)
    ds = pydicom.dcmread(io.BytesIO(ct_series(1, seed=9)[0]))
    assert assoc.send_c_store(ds).Status == Status.NOT_AUTHORISED
    assoc.release()
    ae = _scu()
    ae.add_requested_context(CTImageStorage)
    assoc = _associate(ae, port)
    del ds.PixelData
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == Status.STORE_CANNOT_UNDERSTAND
    assert Instance.objects.count() == 0


def test_accept_unknown_setting(transactional_db: Any, blob_dir: Any) -> None:
    from medvault.dimse.server import dicomserver_start

    port = free_port()
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=True)
    try:
        ae = _scu("ANYONE")
        ae.add_requested_context(Verification)
        assoc = _associate(ae, port)
        assert assoc.is_established
        # An unknown AE may echo and store but not query.
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        assoc.release()
        assert _find(port, StudyRootQueryRetrieveInformationModelFind, q, "ANYONE")[1] == Status.NOT_AUTHORISED
    finally:
        server.shutdown()


def test_concurrent_associations_store_in_parallel(scp: dict[str, Any]) -> None:
    series = [ct_series(4, patient_id=f"CONC-{i}", seed=40 + i) for i in range(4)]
    results: list[list[int]] = [[] for _ in series]

    def send(index: int) -> None:
        results[index] = _store(scp["port"], series[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(series))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [[Status.SUCCESS] * 4] * 4
    assert Instance.objects.count() == 16


def test_tls_echo(transactional_db: Any, blob_dir: Any, settings: Any, tmp_path: Any) -> None:
    import shutil
    import ssl
    import subprocess

    from medvault.dimse.server import dicomserver_start

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    settings.MEDVAULT_DICOM_TLS_CERT, settings.MEDVAULT_DICOM_TLS_KEY = str(cert), str(key)
    RemoteAE.objects.create(ae_title="TESTSCU", host="127.0.0.1", port=104)
    port = free_port()
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        context.check_hostname = False
        ae = _scu()
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", tls_args=(context, None))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == Status.SUCCESS
        assoc.release()
        plain = _scu()
        plain.add_requested_context(Verification)
        assert not _associate(plain, port).is_established
    finally:
        server.shutdown()


def test_called_ae_title_is_checked_unless_switched_off(transactional_db: Any, blob_dir: Any,
                                                        settings: Any) -> None:
    """Issue 16, finding 10: an association to another called AE title is rejected."""
    from medvault.dimse.server import dicomserver_start

    RemoteAE.objects.create(ae_title="TESTSCU", host="127.0.0.1", port=104)
    for check, wrong_accepted in ((True, False), (False, True)):
        settings.MEDVAULT_DICOM_CHECK_CALLED_AE = check
        port = free_port()
        server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False)
        try:
            ae = _scu()
            ae.add_requested_context(Verification)
            right = _associate(ae, port)
            assert right.is_established
            right.release()
            wrong = ae.associate("127.0.0.1", port, ae_title="WRONGAE", evt_handlers=NODELAY)
            assert wrong.is_established is wrong_accepted
            if wrong.is_established:
                wrong.release()
            else:
                assert wrong.is_rejected
        finally:
            server.shutdown()


def test_c_get_sends_the_stored_syntax_when_the_peer_proposes_it_first(
    scp: dict[str, Any], settings: Any, compression_inline: None
) -> None:
    """Issue 16, finding 9: one storage context proposing JPEG-LS, then the native syntaxes;
    the instance is stored as JPEG-LS, so that is what comes back."""
    settings.MEDVAULT_COMPRESSION = "jpegls"
    files = ct_series(1, patient_id="GET-TS", seed=3)
    assert _store(scp["port"], files) == [Status.SUCCESS]
    instance = Instance.objects.get()
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.4.80"
    received: list[Any] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((event.context.transfer_syntax, ds))
        return 0x0000

    ae = _scu()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1",
                                              "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", scp["port"], ae_title="MEDVAULT",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[*NODELAY, (evt.EVT_C_STORE, on_store)])
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = instance.series.study.study_instance_uid
    statuses = [s.Status for s, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == Status.SUCCESS
    ((syntax, ds),) = received
    assert syntax == "1.2.840.10008.1.2.4.80"
    original = pydicom.dcmread(io.BytesIO(files[0]))
    assert np.array_equal(ds.pixel_array, original.pixel_array)
