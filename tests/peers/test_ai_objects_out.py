"""The AI results of an analysed CT leave MedVault like any image of the study: dicomweb-client
(a peer nobody here wrote) finds and retrieves them, C-GET and C-MOVE send them, and
``medvault export`` writes them."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from analysis.fake_backend import FakeBackend
from dicomweb.ctgen import ct_series
from dicomweb_client.api import DICOMwebClient
from dimse.conftest import free_port
from django.core.management import call_command
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    CTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

pytestmark = pytest.mark.slow

SR, SC, CT = str(ComprehensiveSRStorage), str(SecondaryCaptureImageStorage), str(CTImageStorage)


@pytest.fixture
def analysed_study(transactional_db: Any, blob_dir: Any, settings: Any, tmp_path: Path, clinician_a: Any) -> str:
    from medvault.analysis import services
    from medvault.archive.uploads import upload_store

    settings.MEDVAULT_AUTO_ANALYSE = False
    settings.MEDVAULT_MODELS_DIR = tmp_path / "models"
    settings.MEDVAULT_MODELS_DIR.mkdir()
    (settings.MEDVAULT_MODELS_DIR / "lung-ct.onnx").write_bytes(b"placeholder: the fake model never reads it")
    [data] = ct_series(1, patient_id="AI-OUT-1", patient_name="Results^Ruth")
    group = clinician_a.user.groups.get()
    [stored] = upload_store(name="ct.dcm", data=data, source="test", user=clinician_a.user, group=group)
    services.job_enqueue(instance=stored.instance, model_name="lung-ct", requested_by=clinician_a.user)
    [outcome] = services.jobs_drain(backend=FakeBackend())
    assert outcome.status == "done"
    return stored.instance.series.study.study_instance_uid


def _classes(datasets: list[Dataset]) -> list[str]:
    return sorted(str(ds.SOPClassUID) for ds in datasets)


def test_dicomweb_client_finds_and_retrieves_the_results(live_server: Any, analysed_study: str,
                                                         clinician_a: Any, clinician_b: Any) -> None:
    client = DICOMwebClient(f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {clinician_a.token}"})
    [series] = client.search_for_series(analysed_study, search_filters={"Modality": "SR"})
    series_uid = series["0020000E"]["Value"][0]
    [sr] = client.retrieve_series(analysed_study, series_uid)
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    names = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in report.ContentSequence}
    assert names["Algorithm Name"].TextValue == "lung-ct"
    assert names["Finding"].ConceptCodeSequence[0].CodeMeaning == "adenocarcinoma"
    heatmap_uid = names["Class activation heat-map"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    [sc_series] = client.search_for_series(analysed_study, search_filters={"Modality": "OT"})
    [sc] = client.retrieve_series(analysed_study, sc_series["0020000E"]["Value"][0])
    assert sc.SOPInstanceUID == heatmap_uid and sc.pixel_array.shape[-1] == 3
    # Another group's clinician does not see them.
    other = DICOMwebClient(f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {clinician_b.token}"})
    assert other.search_for_series(search_filters={"Modality": "SR"}) == []


def test_c_get_c_move_and_export_send_the_results(analysed_study: str, settings: Any, tmp_path: Path) -> None:
    from medvault.dimse.models import RemoteAE
    from medvault.dimse.server import dicomserver_start

    RemoteAE.objects.create(ae_title="TESTSCU", host="127.0.0.1", port=free_port())
    port = free_port()
    server = dicomserver_start(host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = analysed_study
    try:
        received: list[Dataset] = []
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in (CTImageStorage, ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            ae.add_requested_context(sop_class)
        roles = [
            build_role(c, scp_role=True) for c in (CTImageStorage, ComprehensiveSRStorage, SecondaryCaptureImageStorage)
        ]
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT", ext_neg=roles,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset) or 0x0000)])
        assert assoc.is_established
        statuses = [s.Status for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
        assoc.release()
        assert statuses[-1] == 0x0000
        assert _classes(received) == sorted([CT, SR, SC])

        moved: list[Dataset] = []
        lock = threading.Lock()
        dest_port = free_port()
        RemoteAE.objects.create(ae_title="TESTSTORE", host="127.0.0.1", port=dest_port)
        store_ae = AE(ae_title="TESTSTORE")
        store_ae.supported_contexts = StoragePresentationContexts

        def on_moved(event: Any) -> int:
            with lock:
                moved.append(event.dataset)
            return 0x0000

        store = store_ae.start_server(("127.0.0.1", dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_moved)])
        try:
            ae = AE(ae_title="TESTSCU")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT")
            responses = list(assoc.send_c_move(query, "TESTSTORE", StudyRootQueryRetrieveInformationModelMove))
            assoc.release()
        finally:
            store.shutdown()
        assert responses[-1][0].Status == 0x0000
        assert _classes(moved) == sorted([CT, SR, SC])
    finally:
        server.shutdown()

    call_command("export", "--study", analysed_study, str(tmp_path / "out"), stdout=io.StringIO())
    exported = [pydicom.dcmread(p) for p in sorted((tmp_path / "out").rglob("*.dcm"))]
    assert _classes(exported) == sorted([CT, SR, SC])
