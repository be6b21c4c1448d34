"""Orthanc (Debian's package, a peer nobody here wrote) talks to MedVault over DIMSE and
DICOMweb. Both run inside a private network namespace with only loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .orthanc_env import ROOT, orthanc_available

pytestmark = pytest.mark.slow

_reason = orthanc_available()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if _reason:
        pytest.skip(_reason)
    work = tmp_path_factory.mktemp("orthanc_peer")
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the namespace cannot reach the machine's database servers
    script = Path(__file__).with_name("orthanc_scenario.py")
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" "{script}" "{work}"'],
        cwd=ROOT, env=env, capture_output=True, timeout=900,
    )
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, f"scenario printed nothing (rc {proc.returncode}): {proc.stderr.decode()[-3000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, json.dumps(result, indent=1)[:6000]
    return result


def test_orthanc_stores_a_study_into_medvault(scenario: dict) -> None:
    store = scenario["store"]
    assert len(store["sent"]) == 12
    assert store["orthanc"] == store["sent"]
    assert store["medvault"] == store["sent"]


def test_orthanc_finds_in_medvault(scenario: dict) -> None:
    answers = {key.split(":", 1)[0] + ":" + str(i): v for i, (key, v) in enumerate(scenario["find"].items())}
    studies, series, instances, by_name = answers.values()
    assert sorted(s["PatientID"] for s in studies) == ["ORTH-A", "ORTH-B"]
    assert len(series) == 1 and series[0]["Modality"] == "CT"
    assert len(instances) == 12
    assert [s["PatientName"] for s in by_name] == ["Peer^Bravo"]


def test_medvault_moves_a_study_to_orthanc(scenario: dict) -> None:
    move = scenario["move"]
    assert move["stow_status"] == 200
    assert len(move["sent"]) == 10
    assert move["medvault"] == move["sent"]
    assert move["orthanc"] == move["sent"]


def test_orthanc_dicomweb_plugin_reads_and_writes_medvault(scenario: dict) -> None:
    plugin = scenario["dicomweb_plugin"]
    if not plugin["available"]:
        pytest.skip("the orthanc-dicomweb plugin is not installed")
    assert plugin["stow_c_status"] == 200
    assert [s["00100020"]["Value"] for s in plugin["qido"]] == [["ORTH-C"]]
    assert len(plugin["retrieve"]["sent"]) == 8
    assert plugin["retrieve"]["orthanc"] == plugin["retrieve"]["sent"]
    assert plugin["stow"]["medvault"] == plugin["stow"]["sent"]


def test_orthanc_stores_to_medvault_with_storage_commitment(scenario: dict) -> None:
    """Orthanc 1.10 as storage commitment SCU: ``POST /modalities/{id}/store`` with
    ``"StorageCommitment": true``; MedVault's N-EVENT-REPORT arrives on an association it
    opens to Orthanc, and Orthanc's report says every instance is committed."""
    commitment = scenario["commitment"]
    assert "error" not in commitment, commitment
    assert len(commitment["sent"]) == 5
    assert commitment["medvault"] == commitment["sent"]
    report = commitment["report"]
    assert report["Status"] == "Success", report
    assert report["RemoteAET"] == "MEDVAULT"
    assert sorted(item["SOPInstanceUID"] for item in report["Success"]) == commitment["sent"]
    assert report["Failures"] == []
