"""The content hash that tells a resend from a different instance under the same UID.

Its definition: SHA-256 of the DICOM JSON with sorted keys, compact separators, ASCII, and
every "vr" member removed. Stored rows hold hashes made by that definition, so a faster
implementation must give the same bytes for every data set.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medvault.core.dicom.json import canonical_sha256, dataset_to_json
from medvault.core.dicom.parse import parse_instance


def _by_definition(metadata: dict[str, Any]) -> str:
    def strip_vr(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip_vr(v) for k, v in node.items() if k != "vr"}
        if isinstance(node, list):
            return [strip_vr(item) for item in node]
        return node

    text = json.dumps(strip_vr(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _tricky_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = 'Quote"s^And\\Back'
    ds.PatientID = '"vr":"CS"'  # a value that looks like a VR member
    ds.StudyDescription = 'x","vr":"LO'
    ds.ImageComments = "ünïcode and \u0001 control"
    ds.InstanceNumber = 7
    ds.ImagePositionPatient = [1.5, -2.25, 3]
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodingSchemeDesignator = "SRT"
    inner = Dataset()
    inner.CodeMeaning = '{"vr":"SQ"}'
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([item, Dataset()])
    ds.add_new(0x00091010, "LO", "private")  # private tag
    ds.add_new(0x00280106, "US", None)  # empty: {"vr": "US"} alone
    return ds


def test_canonical_hash_matches_its_definition_on_tricky_values():
    metadata = dataset_to_json(_tricky_dataset())
    assert metadata["00280106"] == {"vr": "US"}
    assert canonical_sha256(metadata) == _by_definition(metadata)


def test_canonical_hash_ignores_vr_only():
    metadata = dataset_to_json(_tricky_dataset())
    other = json.loads(json.dumps(metadata))
    other["00100020"]["vr"] = "UN"
    assert canonical_sha256(other) == canonical_sha256(metadata)
    other["00100020"]["Value"] = ["changed"]
    assert canonical_sha256(other) != canonical_sha256(metadata)


def test_canonical_hash_matches_its_definition_on_every_sample(shared_data):
    files = sorted((shared_data / "dicom").rglob("*.dcm"))
    checked = 0
    for path in files:
        try:
            parsed = parse_instance(path.read_bytes())
        except Exception:  # noqa: BLE001 - the invalid samples are rejected; nothing to hash
            continue
        assert parsed.content_sha256 == _by_definition(parsed.metadata), path.name
        checked += 1
    if checked < 10:
        pytest.fail(f"only {checked} samples parsed; expected the shared DICOM samples")
