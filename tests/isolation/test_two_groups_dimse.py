"""The hostile two-group suite, DIMSE doors, over the network against MedVault's SCP.

B's modality (AE MOD_B) sends and asks for A's UIDs and PatientID with C-STORE, C-FIND,
C-GET and C-MOVE; nothing of A comes back. Finding 7: an AE is identified by its title
*and* its host (``MEDVAULT_DICOM_CHECK_HOST``), and C-MOVE sends only to the caller's group.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dimse.conftest import free_port
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

from medvault.dimse.association import nodelay_set
from medvault.dimse.models import RemoteAE
from medvault.dimse.status import Status

from .world import A_PATIENT_ID, World, dicom_file, leaks, world_build

NODELAY = [(evt.EVT_CONN_OPEN, nodelay_set)]


@pytest.fixture
def world_scp(transactional_db: Any, blob_dir: Any, settings: Any) -> Iterator[tuple[World, int]]:
    from medvault.dimse.server import dicomserver_start

    settings.MEDVAULT_AUTO_ANALYSE = False
    world = world_build()
    port = free_port()
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False)
    try:
        yield world, port
    finally:
        server.shutdown()


def _associate(title: str, port: int, *contexts: str, bind: str = "127.0.0.1", **kwargs: Any) -> Any:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts:
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", port, ae_title="MEDVAULT", bind_address=(bind, 0),
                        evt_handlers=NODELAY, **kwargs)


def _store(title: str, port: int, data: bytes) -> Dataset:
    ae = AE(ae_title=title)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", evt_handlers=NODELAY)
    assert assoc.is_established
    import io

    import pydicom

    status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(data)))
    assoc.release()
    return status


def _find(port: int, model: str, **keys: str) -> list[Dataset]:
    assoc = _associate("MOD_B", port, model)
    assert assoc.is_established
    query = Dataset()
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    found = []
    for status, identifier in assoc.send_c_find(query, model):
        assert status.Status in (Status.PENDING, Status.SUCCESS), hex(status.Status)
        if identifier is not None:
            found.append(identifier)
    assoc.release()
    return found


def test_b_modality_gets_nothing_of_a(world_scp: tuple[World, int]) -> None:
    world, port = world_scp
    before = world.a_counts()
    # C-STORE with A's study UID and PatientID: refused, Not Authorized, naming nothing of A.
    attack = dicom_file(patient_id=A_PATIENT_ID, patient_name="Made^Up", study_uid=world.study_uid, seed=31)
    status = _store("MOD_B", port, attack)
    assert status.Status == Status.NOT_AUTHORISED
    assert not leaks(str(status.get("ErrorComment", "")), also=(world.series_uid, *world.sop_uids))
    assert world.a_counts() == before
    # B's own study with A's PatientID is stored, in B's namespace.
    own = dicom_file(patient_id=A_PATIENT_ID, patient_name="Made^Up", seed=32)
    assert _store("MOD_B", port, own).Status == Status.SUCCESS
    # C-FIND at every level with A's identifiers: nothing of A.
    study_root, patient_root = StudyRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelFind
    queries = [
        (study_root, {"QueryRetrieveLevel": "STUDY", "PatientName": "SECRET*", "StudyInstanceUID": ""}),
        (study_root, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": world.study_uid, "PatientName": ""}),
        (study_root, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": world.study_uid, "SeriesInstanceUID": ""}),
        (study_root, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": world.study_uid,
                      "SeriesInstanceUID": world.series_uid, "SOPInstanceUID": ""}),
        (patient_root, {"QueryRetrieveLevel": "PATIENT", "PatientName": "SECRET*", "PatientID": ""}),
    ]
    for model, keys in queries:
        assert _find(port, model, **keys) == [], keys
    # A's PatientID finds B's own patient only, with B's name.
    found = _find(port, patient_root, QueryRetrieveLevel="PATIENT", PatientID=A_PATIENT_ID,
                  PatientName="", PatientBirthDate="")
    assert [str(d.PatientName) for d in found] == ["Made^Up"]
    assert not leaks(str(found[0]))
    found = _find(port, study_root, QueryRetrieveLevel="STUDY", PatientID=A_PATIENT_ID,
                  StudyInstanceUID="", AccessionNumber="", StudyDescription="")
    assert len(found) == 1 and found[0].StudyInstanceUID != world.study_uid
    assert not leaks(str(found[0]))
    # C-GET of A's study: nothing is sent.
    received: list[Any] = []
    ae = AE(ae_title="MOD_B")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[*NODELAY, (evt.EVT_C_STORE, lambda e: received.append(e) or 0)])
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = world.study_uid
    responses = [s for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert responses[-1].Status == Status.SUCCESS and received == []
    assert int(responses[-1].get("NumberOfCompletedSuboperations", 0)) == 0
    # C-MOVE of A's study to B's own storage AE: nothing is sent.
    moved = _c_move(world, port, world.study_uid, "MOD_B")
    assert moved["received"] == [] and moved["status"] == Status.SUCCESS


def _c_move(world: World, port: int, study_uid: str, destination: str) -> dict[str, Any]:
    """C-MOVE ``study_uid`` from MOD_B to ``destination`` (a storage SCP this test runs)."""
    dest_port = free_port()
    RemoteAE.objects.filter(ae_title=destination).update(port=dest_port)
    received: list[Any] = []
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        with lock:
            received.append(event.request.AffectedSOPInstanceUID)
        return 0

    store_ae = AE(ae_title=destination)
    store_ae.supported_contexts = StoragePresentationContexts
    server = store_ae.start_server(("127.0.0.1", dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        assoc = _associate("MOD_B", port, StudyRootQueryRetrieveInformationModelMove)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        responses = [s for s, _ in assoc.send_c_move(query, destination, StudyRootQueryRetrieveInformationModelMove)]
        assoc.release()
    finally:
        server.shutdown()
    return {"status": responses[-1].Status, "received": received}


def test_finding7_c_move_goes_only_to_the_callers_group(world_scp: tuple[World, int]) -> None:
    """Finding 7: C-MOVE destinations were not limited to the caller's group; B could send
    its studies (or anything it may retrieve) to A's AE."""
    world, port = world_scp
    own = dicom_file(patient_id="MRN-B-1", patient_name="Bee^Bob", seed=41)
    assert _store("MOD_B", port, own).Status == Status.SUCCESS
    from medvault.archive.models import Study

    b_study = Study.objects.get(group=world.group_b).study_instance_uid
    to_a = _c_move(world, port, b_study, "MOD_A")
    assert to_a["status"] == Status.MOVE_DESTINATION_UNKNOWN and to_a["received"] == []
    to_b = _c_move(world, port, b_study, "MOD_B")
    assert to_b["status"] == Status.SUCCESS and len(to_b["received"]) == 1


def test_finding7_an_ae_title_from_another_host_is_refused(world_scp: tuple[World, int], settings: Any) -> None:
    """Finding 7: DIMSE callers were identified by AE title alone; MOD_A's title called from
    another host got A's data. Now the calling host must be the AE's configured host."""
    world, port = world_scp
    assoc = _associate("MOD_A", port, Verification, bind="127.0.0.2")
    assert not assoc.is_established and assoc.is_rejected
    from dimse.conftest import eventually

    from medvault.accounts.models import AuditRecord

    assert eventually(lambda: AuditRecord.objects.filter(action="associate", outcome="denied",
                                                         remote_addr__startswith="127.0.0.2").exists(), seconds=3)
    assoc = _associate("MOD_A", port, Verification, bind="127.0.0.1")
    assert assoc.is_established
    assoc.release()
    # The check can be turned off (MEDVAULT_DICOM_CHECK_HOST=false), e.g. behind NAT.
    settings.MEDVAULT_DICOM_CHECK_HOST = False
    assoc = _associate("MOD_A", port, Verification, bind="127.0.0.2")
    assert assoc.is_established
    assoc.release()
