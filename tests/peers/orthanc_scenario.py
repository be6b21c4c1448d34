"""Orthanc ⇄ MedVault interoperability scenario; run inside ``unshare --net`` (see
test_orthanc.py). Prints one JSON object with counts and pixel hashes from both sides.

Usage: python tests/peers/orthanc_scenario.py WORKDIR
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path

import pydicom
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (for dicomweb.ctgen)

from dicomweb.ctgen import ct_series  # noqa: E402

from medvault.core.dicom.multipart import (  # noqa: E402
    boundary_new,
    multipart_build,
    multipart_content_type,
    multipart_parse,
)
from peers.orthanc_env import Peers  # noqa: E402


def pixel_hashes(files: list[bytes]) -> dict[str, str]:
    out = {}
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        out[ds.SOPInstanceUID] = hashlib.sha256(ds.pixel_array.astype("<i4").tobytes()).hexdigest()
    return out


def study_uid(files: list[bytes]) -> str:
    return pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True).StudyInstanceUID


def medvault_files(peers: Peers, uid: str) -> list[bytes]:
    response = requests.get(
        f"{peers.mv}/dicomweb/studies/{uid}", auth=peers.mv_auth, timeout=300,
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [p.content for p in multipart_parse(response.content, response.headers["Content-Type"])]


def stow(peers: Peers, files: list[bytes]) -> int:
    boundary = boundary_new()
    response = requests.post(
        f"{peers.mv}/dicomweb/studies", auth=peers.mv_auth, timeout=300,
        data=b"".join(multipart_build([(f, "application/dicom") for f in files], boundary)),
        headers={"Content-Type": multipart_content_type(boundary, "application/dicom")},
    )
    return response.status_code


def main(work: Path) -> dict[str, object]:
    result: dict[str, object] = {}
    a = ct_series(12, patient_id="ORTH-A", patient_name="Peer^Alpha", seed=21)
    b = ct_series(10, patient_id="ORTH-B", patient_name="Peer^Bravo", seed=22)
    c = ct_series(8, patient_id="ORTH-C", patient_name="Peer^Charlie", seed=23)
    d = ct_series(6, patient_id="ORTH-D", patient_name="Peer^Delta", seed=24)
    e = ct_series(5, patient_id="ORTH-E", patient_name="Peer^Echo", seed=25)
    with Peers(work) as peers:
        # 1. Orthanc sends a study to MedVault over C-STORE (REST /modalities/{id}/store).
        for data in a:
            peers.orthanc_call("POST", "/instances", data=data)
        orthanc_a = peers.orthanc_study_id(study_uid(a))
        job = peers.orthanc_call("POST", "/modalities/medvault/store",
                                 json={"Resources": [orthanc_a], "Synchronous": True})
        result["store"] = {
            "sent": pixel_hashes(a),
            "orthanc": pixel_hashes(peers.orthanc_study_files(study_uid(a))),
            "medvault": pixel_hashes(medvault_files(peers, study_uid(a))),
            "job": job if isinstance(job, dict) else {},
        }

        # 2. Orthanc queries MedVault (C-FIND) at study, series and instance level.
        stow_b = stow(peers, b)
        queries = {}
        for level, query in (
            ("Study", {"PatientID": "ORTH-*", "StudyInstanceUID": ""}),
            ("Series", {"StudyInstanceUID": study_uid(a), "Modality": "CT", "SeriesInstanceUID": ""}),
            ("Instance", {"StudyInstanceUID": study_uid(a), "SOPInstanceUID": ""}),
            ("Study", {"PatientName": "peer^b*", "StudyInstanceUID": ""}),
        ):
            q = peers.orthanc_call("POST", "/modalities/medvault/query", json={"Level": level, "Query": query})
            answers = peers.orthanc_call("GET", f"/queries/{q['ID']}/answers?expand&simplify")
            queries[f"{level}:{json.dumps(query, sort_keys=True)}"] = answers
        result["find"] = queries

        # 3. MedVault sends a study to Orthanc by C-MOVE (Orthanc asks with itself as target).
        move = peers.orthanc_call("POST", "/modalities/medvault/move", json={
            "Level": "Study", "Resources": [{"StudyInstanceUID": study_uid(b)}], "TargetAet": "ORTHANC",
            "Synchronous": True,
        })
        result["move"] = {
            "stow_status": stow_b,
            "sent": pixel_hashes(b),
            "medvault": pixel_hashes(medvault_files(peers, study_uid(b))),
            "orthanc": pixel_hashes(peers.orthanc_study_files(study_uid(b))),
            "job": move if isinstance(move, dict) else {},
        }

        # 4. Orthanc's DICOMweb client plugin reads from MedVault (QIDO-RS + WADO-RS) ...
        plugin = {"available": False}
        servers = requests.get(peers.orthanc + "/dicom-web/servers", timeout=30)
        if servers.status_code == 200:
            plugin["available"] = True
            plugin["stow_c_status"] = stow(peers, c)
            qido = peers.orthanc_call("POST", "/dicom-web/servers/medvault/get",
                                      json={"Uri": "/studies", "Arguments": {"PatientID": "ORTH-C"}})
            plugin["qido"] = qido
            peers.orthanc_call("POST", "/dicom-web/servers/medvault/retrieve",
                               json={"Resources": [{"Study": study_uid(c)}]})
            plugin["retrieve"] = {
                "sent": pixel_hashes(c),
                "orthanc": pixel_hashes(peers.orthanc_study_files(study_uid(c))),
            }
            # ... and writes to it (STOW-RS from Orthanc).
            for data in d:
                peers.orthanc_call("POST", "/instances", data=data)
            peers.orthanc_call("POST", "/dicom-web/servers/medvault/stow",
                               json={"Resources": [peers.orthanc_study_id(study_uid(d))]})
            plugin["stow"] = {
                "sent": pixel_hashes(d),
                "medvault": pixel_hashes(medvault_files(peers, study_uid(d))),
            }
        result["dicomweb_plugin"] = plugin

        # 5. Orthanc stores a study with storage commitment: C-STORE, then N-ACTION; MedVault
        # answers with an N-EVENT-REPORT on an association it opens back to Orthanc.
        try:
            result["commitment"] = storage_commitment(peers, e)
        except Exception as exc:  # only this step's test fails
            result["commitment"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def storage_commitment(peers: Peers, files: list[bytes], wait_s: float = 120) -> dict[str, object]:
    for data in files:
        peers.orthanc_call("POST", "/instances", data=data)
    job = peers.orthanc_call("POST", "/modalities/medvault/store", json={
        "Resources": [peers.orthanc_study_id(study_uid(files))], "Synchronous": True,
        "StorageCommitment": True,
    })
    transaction = job["StorageCommitmentTransactionUID"]
    deadline = time.monotonic() + wait_s  # a bound on waiting for the report, not a check
    while True:
        report = peers.orthanc_call("GET", f"/storage-commitment/{transaction}")
        if report.get("Status") != "Pending" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    sent = sorted(pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID for f in files)
    return {
        "transaction": transaction,
        "sent": sent,
        "report": report,
        "medvault": sorted(pixel_hashes(medvault_files(peers, study_uid(files)))),
    }


if __name__ == "__main__":
    work_dir = Path(sys.argv[1])
    try:
        print(json.dumps(main(work_dir)))
    except Exception as exc:  # report, with the peers' logs, instead of a bare traceback
        logs = {p.name: p.read_text(errors="replace")[-3000:] for p in work_dir.glob("*.log")}
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "logs": logs}))
        sys.exit(1)
