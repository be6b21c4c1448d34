"""The guarantees of the one job queue (``medvault.archive.jobs``) that every kind of
background work uses: analysis jobs, deferred compression, storage commitment reports.

* a job whose worker is killed with SIGKILL is finished by another worker once the lease
  runs out (real processes on a real database file);
* exactly one stored result: an attempt whose lease ran out and whose job another worker
  claimed can no longer write, whatever it does late;
* retries are bounded: after ``max`` claims the job fails for good, and each retry waits a
  doubling backoff.

The rows used here are storage commitment reports (no foreign key to fill in); the code under
test is the shared queue, not anything of that kind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from medvault.archive.jobs import JobState, LeaseQueue, Outcome, doubling_backoff
from medvault.dimse.commitment import REPORTS
from medvault.dimse.models import StorageCommitment

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

State = StorageCommitment.State


def _row() -> StorageCommitment:
    return StorageCommitment.objects.create(
        transaction_uid="1.2.3", ae_title="PEER", requested=[], next_attempt_at=timezone.now()
    )


def _expire(row: StorageCommitment) -> None:
    StorageCommitment.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# --- in one process ------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_live_lease_is_exclusive_and_an_expired_one_is_taken_over() -> None:
    row = _row()
    first = REPORTS.claim(worker_id="")
    assert first is not None and first.pk == row.pk and first.attempts == 1
    assert REPORTS.claim(worker_id="") is None  # the lease is live
    _expire(first)
    second = REPORTS.claim(worker_id="")
    assert second is not None and second.pk == row.pk and second.attempts == 2


@pytest.mark.django_db
def test_a_stale_attempt_cannot_write_after_a_takeover() -> None:
    _row()
    stale = REPORTS.claim(worker_id="")
    assert stale is not None
    _expire(stale)
    owner = REPORTS.claim(worker_id="")
    assert owner is not None
    # The stale attempt wakes up late: none of its writes lands.
    assert REPORTS.owned(stale).update(result={"by": "stale"}) == 0
    assert not REPORTS.complete(stale)
    assert REPORTS.retry(stale, error="late") is Outcome.GONE
    assert REPORTS.owned(owner).update(result={"by": "owner"}) == 1
    assert REPORTS.complete(owner)
    row = StorageCommitment.objects.get()
    assert row.state == State.DELIVERED and row.result == {"by": "owner"} and row.last_error == ""


@pytest.mark.django_db
def test_retries_back_off_and_are_bounded(settings: Any) -> None:
    settings.MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS = 3
    settings.MEDVAULT_DICOM_COMMITMENT_RETRY_SECONDS = 10
    row = _row()
    outcomes, delays = [], []
    while (job := REPORTS.claim(worker_id="")) is not None or StorageCommitment.objects.filter(
        pk=row.pk, state=State.PENDING
    ).exists():
        if job is None:  # backing off: skip the wait
            _expire(row)
            continue
        before = timezone.now()
        outcomes.append(REPORTS.retry(job, error=f"attempt {job.attempts} failed"))
        due = StorageCommitment.objects.get(pk=row.pk).next_attempt_at
        if due is not None:
            delays.append(round((due - before).total_seconds()))
        assert len(outcomes) <= 3, "more attempts than allowed"
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    assert delays == [10, 20]  # doubling
    row.refresh_from_db()
    assert row.state == State.FAILED and row.attempts == 3 and row.last_error == "attempt 3 failed"
    assert REPORTS.claim(worker_id="") is None


@pytest.mark.django_db
def test_a_worker_that_dies_on_every_attempt_is_still_bounded(settings: Any) -> None:
    settings.MEDVAULT_DICOM_COMMITMENT_MAX_ATTEMPTS = 2
    row = _row()
    for _ in range(2):
        job = REPORTS.claim(worker_id="")
        assert job is not None
        _expire(job)  # the worker died: nothing recorded, the lease runs out
    assert REPORTS.claim(worker_id="") is None
    row.refresh_from_db()
    assert row.state == State.FAILED and "gave up after 2 attempts" in row.last_error


@pytest.mark.django_db
def test_release_gives_the_claim_back_uncounted() -> None:
    _row()
    job = REPORTS.claim(worker_id="")
    assert job is not None and REPORTS.release(job)
    again = REPORTS.claim(worker_id="")
    assert again is not None and again.attempts == 1


def test_default_columns_and_backoff_are_the_analysis_jobs() -> None:
    from medvault.analysis.models import AnalysisJob

    queue: LeaseQueue[AnalysisJob] = LeaseQueue(AnalysisJob)
    assert (queue.state, queue.due, queue.worker, queue.queued, queue.failed) == (
        "status", "lease_until", "worker_id", JobState.QUEUED, JobState.FAILED
    )
    delay = doubling_backoff(lambda: 5.0)
    assert [delay(n) for n in (1, 2, 3, 20)] == [5.0, 10.0, 20.0, 3600.0]


# --- real processes ------------------------------------------------------------------------
class Installation:
    def __init__(self, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
            "DATABASE_URL": f"sqlite:///{tmp / 'medvault.sqlite3'}",
            "MEDVAULT_DATA_DIR": str(tmp / "var"),
            "MEDVAULT_BLOB_DIR": str(tmp / "blobs"),
            "MEDVAULT_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src")]),
        }
        subprocess.run([sys.executable, "-m", "medvault.cli", "migrate", "-v0", "--skip-checks"],
                       env=self.env, check=True, cwd=ROOT, timeout=300)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(HERE / "jobs_procs.py"), *args], env=self.env, cwd=ROOT,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str) -> Any:
        proc = self.popen(*args)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        return json.loads(out)


@pytest.fixture(scope="module")
def installation(tmp_path_factory: Any) -> Installation:
    return Installation(tmp_path_factory.mktemp("jobs"))


def _wait_for(path: Path, lines: int, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and len(path.read_text().splitlines()) >= lines):
        assert proc.poll() is None or lines > 1, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no worker started the job ({path})"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_is_finished_by_another(installation: Installation, tmp_path: Path) -> None:
    pk = installation.run("seed")
    started = tmp_path / "started"
    doomed = installation.popen("work", str(pk), "10", "600", str(started))
    try:
        _wait_for(started, 1, doomed)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    assert installation.run("state", str(pk))["state"] == State.PENDING
    # A worker that looks while the dead one's lease is live finds nothing to do ...
    assert installation.run("work", str(pk), "10", "0", str(started)) == {"claimed": False}
    # ... and one that looks after it has run out takes the job over and finishes it.
    deadline = time.monotonic() + 60
    while (outcome := installation.run("work", str(pk), "10", "0", str(started))) == {"claimed": False}:
        assert time.monotonic() < deadline, "the job was never taken over"
        time.sleep(0.2)
    assert outcome == {"claimed": True, "stored": True, "done": True, "attempt": 2}
    state = installation.run("state", str(pk))
    assert state["state"] == State.DELIVERED and state["attempts"] == 2
    assert state["result"]["attempt"] == 2
    assert [line.split()[1] for line in started.read_text().splitlines()] == ["1", "2"]


@pytest.mark.slow
def test_two_workers_racing_for_one_job_store_one_result(installation: Installation, tmp_path: Path) -> None:
    pk = installation.run("seed")
    started = tmp_path / "started"
    # The slow worker outlives its 1 s lease; the fast one takes the job over meanwhile.
    slow = installation.popen("work", str(pk), "1", "20", str(started))
    _wait_for(started, 1, slow)
    deadline = time.monotonic() + 60
    while (fast := installation.run("work", str(pk), "30", "0", str(started))) == {"claimed": False}:
        assert time.monotonic() < deadline, "the job was never taken over"
        time.sleep(0.1)
    out, err = slow.communicate(timeout=60)
    assert slow.returncode == 0, err[-3000:]
    late = json.loads(out)
    assert fast == {"claimed": True, "stored": True, "done": True, "attempt": 2}
    assert late == {"claimed": True, "stored": False, "done": False, "attempt": 1}
    state = installation.run("state", str(pk))
    assert state["state"] == State.DELIVERED and state["result"]["attempt"] == 2
