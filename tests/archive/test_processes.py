"""Crash safety and concurrency with real processes (`medvault ingest`) on a real database.

These run the console script in child processes against their own database (a SQLite
file, or a throw-away PostgreSQL database), because the point is several processes and a
SIGKILL, which the in-process test database cannot show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pydicom
import pytest

from .helpers import ct_series, dicom_samples, subprocess_env, write_files

PYTHON = sys.executable
CLI = [PYTHON, "-m", "medvault.cli"]

CHECK_SCRIPT = r"""
import json, django
django.setup()
from django.db.models import Count
from medvault.archive.models import Instance, Series, Study, Patient
problems = []
for study in Study.objects.all():
    n_inst = Instance.objects.filter(series__study=study).count()
    n_series = study.series.count()
    mods = sorted(set(m for m in study.series.values_list("modality", flat=True) if m))
    if (study.number_of_instances, study.number_of_series) != (n_inst, n_series):
        problems.append(["study counts", study.study_instance_uid, study.number_of_instances, n_inst,
                         study.number_of_series, n_series])
    if study.modalities_in_study.split("\\") != mods and not (mods == [] and study.modalities_in_study == ""):
        problems.append(["modalities", study.study_instance_uid, study.modalities_in_study, mods])
for series in Series.objects.annotate(n=Count("instances")):
    if series.number_of_instances != series.n:
        problems.append(["series count", series.series_instance_uid, series.number_of_instances, series.n])
dupes = Instance.objects.values("sop_instance_uid").annotate(n=Count("pk")).filter(n__gt=1).count()
print(json.dumps({"instances": Instance.objects.count(), "studies": Study.objects.count(),
                  "series": Series.objects.count(), "patients": Patient.objects.count(),
                  "duplicate_rows": dupes, "problems": problems}))
"""


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _migrate(env: dict[str, str]) -> None:
    done = _run([*CLI, "migrate", "--noinput", "-v0"], env)
    assert done.returncode == 0, done.stderr


def _check(env: dict[str, str]) -> dict:
    done = _run([PYTHON, "-c", CHECK_SCRIPT], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _scrub(env: dict[str, str], *extra: str) -> tuple[int, dict]:
    done = _run([*CLI, "scrub", "--min-age", "0", *extra], env)
    return done.returncode, json.loads(done.stdout)


def _valid_real_samples(dicom_data: Path) -> list[Path]:
    skip = {"invalid", "DICOMDIR"}
    return [p for p in dicom_samples(dicom_data) if not (skip & set(p.parts))]


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_no_row_without_blob(dicom_data, tmp_path):
    env = subprocess_env(tmp_path, f"sqlite:///{tmp_path / 'crash.sqlite3'}")
    _migrate(env)
    folder = tmp_path / "batch"
    write_files(folder, ct_series(dicom_data, 60, seed=1))
    child = subprocess.Popen(
        [*CLI, "ingest", str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines = 0
    assert child.stdout is not None
    while lines < 12:
        if not child.stdout.readline():
            break
        lines += 1
    # Kill once a blob beyond the 12 acknowledged instances is on disk: a write is in flight.
    blobs = Path(env["MEDVAULT_BLOB_DIR"])
    deadline = time.monotonic() + 60
    while sum(1 for p in blobs.rglob("*") if p.is_file()) <= lines:
        assert child.poll() is None, "the ingest finished before it could be killed mid-batch"
        assert time.monotonic() < deadline, "no write beyond the acknowledged instances within 60 s"
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    partial = _check(env)
    assert 12 <= partial["instances"] < 60
    code, report = _scrub(env)
    assert report["missing"] == [] and report["corrupt"] == []
    assert report["rows_checked"] == partial["instances"]
    # The re-run completes: what was stored is a duplicate, the rest is stored.
    rerun = _run([*CLI, "ingest", str(folder)], env)
    assert rerun.returncode == 0, rerun.stderr
    statuses = [json.loads(line)["status"] for line in rerun.stdout.splitlines()]
    assert statuses.count("duplicate") == partial["instances"]
    assert statuses.count("stored") == 60 - partial["instances"]
    final = _check(env)
    assert final["instances"] == 60 and final["problems"] == []
    code, report = _scrub(env, "--repair")
    assert code == 0 and report["missing"] == [] and report["rows_checked"] == 60


def _concurrent_ingest(dicom_data: Path, tmp_path: Path, database_url: str) -> None:
    env = subprocess_env(tmp_path, database_url)
    _migrate(env)
    generated = write_files(tmp_path / "gen", ct_series(dicom_data, 40, seed=2))
    real = _valid_real_samples(dicom_data)
    sets = [
        generated[0:25] + real[0:20],
        generated[10:35] + real[10:30],
        generated[20:40] + real[20:],
        list(reversed(generated + real)),
    ]
    children = [
        subprocess.Popen(
            [*CLI, "ingest", *map(str, paths)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for paths in sets
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    statuses: dict[str, list[str]] = {}
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert "Traceback" not in err, err
        for line in out.splitlines():
            record = json.loads(line)
            statuses.setdefault(record["sop_instance_uid"], []).append(record["status"])
    # Every distinct instance was stored exactly once; every other sighting is a duplicate.
    for uid, seen in statuses.items():
        assert seen.count("stored") == 1, (uid, seen)
        assert set(seen) <= {"stored", "duplicate"}, (uid, seen)
    state = _check(env)
    assert state["duplicate_rows"] == 0 and state["problems"] == []
    assert state["instances"] == len(statuses)
    # The same MR_small in several transfer syntaxes is one instance; plus the 40 generated.
    distinct_real = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in real}
    assert state["instances"] == len(distinct_real) + 40


@pytest.mark.slow
def test_four_processes_overlapping_sets_sqlite(dicom_data, tmp_path):
    _concurrent_ingest(dicom_data, tmp_path, f"sqlite:///{tmp_path / 'conc.sqlite3'}")


def _postgres_admin_url() -> str:
    return os.environ.get("MEDVAULT_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_overlapping_sets_postgres(dicom_data, tmp_path):
    psycopg = pytest.importorskip("psycopg")
    admin = _postgres_admin_url()
    try:
        conn = psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {admin}: {exc}")
    name = f"mv_archive_conc_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.rsplit("/", 1)[0] + "/" + name
        _concurrent_ingest(dicom_data, tmp_path, url)
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
