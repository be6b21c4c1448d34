"""Backup and restore: ingest -> backup -> ingest more -> backup -> wipe -> restore each.

Runs on whichever database DATABASE_URL selects (CI runs it on SQLite, PostgreSQL and
MariaDB): VACUUM INTO, pg_dump/pg_restore, mariadb-dump/mariadb respectively.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from medvault.accounts.audit import audit_record
from medvault.accounts.models import AuditRecord
from medvault.archive.blobstore import blob_store
from medvault.archive.ingest import instance_store
from medvault.archive.models import Instance
from medvault.archive.selectors import instance_part10_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FIRST = ["single_ct/CT_small.dcm", "single_mr/MR2_UNCR.dcm", "tcia/ACRIN-FLT-Breast_PT_a.dcm"]
SECOND = ["single_mr/MR_small.dcm", "multiframe/emri_small.dcm", "tcia/PROSTATE-MRI_MR.dcm"]


def _ingest(shared_data: Path, names: list[str]) -> list[str]:
    stored = []
    for name in names:
        result = instance_store(data=(shared_data / "dicom" / name).read_bytes(), source="cli")
        assert result.status == "stored", (name, result.reason)
        stored.append(result.sop_instance_uid)
        audit_record(user=None, action="upload", sop_uid=result.sop_instance_uid, detail=name)
    return stored


def _add_analysis(sop_uid: str, label: str) -> None:
    from medvault.analysis.models import AnalysisJob, AnalysisResult

    instance = Instance.objects.get(sop_instance_uid=sop_uid)
    heatmap = blob_store().put(f"heat-map of {sop_uid} {label}".encode())
    job = AnalysisJob.objects.create(instance=instance, model_name="lung-ct", status="done")
    AnalysisResult.objects.create(
        job=job, instance=instance, model_name="lung-ct", model_version="1",
        label=label, probabilities={label: 0.9, "other": 0.1}, heatmap_key=heatmap,
    )
    audit_record(user=None, action="analyse", sop_uid=sop_uid, detail=label)


def _state() -> dict:
    """Everything a user relies on, reduced to comparable values (bytes as hashes)."""
    from medvault.analysis.models import AnalysisResult

    store = blob_store()
    instances = {}
    for inst in Instance.objects.order_by("sop_instance_uid"):
        blob = store.get(inst.blob_key)
        assert hashlib.sha256(blob).hexdigest() == inst.blob_key
        instances[inst.sop_instance_uid] = (
            inst.blob_key,
            hashlib.sha256(instance_part10_bytes(instance=inst)).hexdigest(),
            inst.series.series_instance_uid,
            inst.series.study.study_instance_uid,
            inst.metadata,
        )
    results = sorted(
        (r.instance.sop_instance_uid, r.model_name, r.label, json.dumps(r.probabilities),
         hashlib.sha256(store.get(r.heatmap_key)).hexdigest())
        for r in AnalysisResult.objects.select_related("instance")
    )
    audits = sorted(
        (a.action, a.sop_uid, a.detail, a.created_at.isoformat())
        for a in AuditRecord.objects.all()
    )
    return {"instances": instances, "results": results, "audits": audits}


def _backup(dest: Path) -> dict:
    out = StringIO()
    call_command("backup", str(dest), stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def _restore(dest: Path, name: str, *flags: str) -> None:
    call_command("restore", str(dest), "--snapshot", name, *flags, stdout=StringIO(),
                 stderr=StringIO())


def _wipe(blob_dir: Path) -> None:
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(blob_dir, ignore_errors=True)
    assert Instance.objects.count() == 0
    assert list(blob_store().iter_keys()) == []


def test_backup_twice_wipe_restore_each_snapshot_bit_exact(
    shared_data: Path, blob_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    first_uids = _ingest(shared_data, FIRST)
    _add_analysis(first_uids[0], "normal")
    state1 = _state()
    snap1 = _backup(dest)
    assert snap1["blob_count"] == len(state1["instances"]) + 1  # + the heat-map
    assert snap1["new_blob_count"] == snap1["blob_count"]

    second_uids = _ingest(shared_data, SECOND)
    _add_analysis(second_uids[0], "glioma")
    state2 = _state()
    assert len(state2["instances"]) == len(FIRST) + len(SECOND)
    snap2 = _backup(dest)
    # Incremental: only the content addresses that appeared since the first backup.
    assert snap2["new_blob_count"] == snap2["blob_count"] - snap1["blob_count"] == len(SECOND) + 1

    for name in (snap1["name"], snap2["name"]):
        out = StringIO()
        call_command("backup", str(dest), "--verify", "--snapshot", name, stdout=out)
        assert json.loads(out.getvalue())["ok"] is True

    _wipe(blob_dir)
    _restore(dest, snap1["name"])
    assert _state() == state1

    # The installation is no longer empty: a restore must be asked for explicitly.
    with pytest.raises(CommandError, match="not empty"):
        _restore(dest, snap2["name"])
    _restore(dest, snap2["name"], "--force")
    assert _state() == state2

    _wipe(blob_dir)
    _restore(dest, snap2["name"])
    assert _state() == state2


def test_verify_and_restore_detect_a_corrupt_blob(
    shared_data: Path, blob_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    _ingest(shared_data, FIRST[:1])
    snap = _backup(dest)
    key = next(iter(json.loads(
        (dest / "snapshots" / snap["name"] / "manifest.json").read_text())["blobs"]))
    damaged = dest / "blobs" / key[:2] / key[2:4] / key
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))

    out = StringIO()
    with pytest.raises(CommandError, match="failed verification"):
        call_command("backup", str(dest), "--verify", stdout=out)
    assert f"blob {key} is corrupt" in out.getvalue()

    _wipe(blob_dir)
    with pytest.raises(CommandError, match="corrupt"):
        _restore(dest, snap["name"])
    assert Instance.objects.count() == 0  # nothing half-restored into the index


def test_backup_refuses_to_copy_a_corrupt_source_blob(
    shared_data: Path, blob_dir: Path, tmp_path: Path
) -> None:
    _ingest(shared_data, FIRST[:1])
    inst = Instance.objects.get()
    path = blob_dir / inst.blob_key[:2] / inst.blob_key[2:4] / inst.blob_key
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="corrupt"):
        _backup(tmp_path / "backups")
