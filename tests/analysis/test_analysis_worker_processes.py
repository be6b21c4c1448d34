"""``medvault worker`` as real processes on a real database file/server.

* claims are exclusive when several processes compete;
* a worker killed with SIGKILL mid-job: the job is re-run after its lease expires by another
  worker and its result is stored exactly once;
* SIGTERM lets the job in hand finish, then the worker exits 0.

The workers run the fake backend in ``fake_backend.py`` (a slow model on demand), injected
through ``MEDVAULT_ANALYSIS_BACKEND``; everything else is the shipped code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

pytestmark = pytest.mark.slow


class Procs:
    """A private installation (database + blob dir) driven through subprocesses."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp

    def run(self, *args: str, extra: dict[str, str] | None = None, timeout: float = 120) -> str:
        out = subprocess.run(
            [sys.executable, str(HERE / "procs.py"), *args],
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    def seed(self, count: int, model: str = "lung-ct") -> list[int]:
        return json.loads(self.run("seed", str(count), model))

    def state(self) -> dict[str, Any]:
        return json.loads(self.run("state"))

    def worker(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "medvault.cli", "worker", *args],
            env={**self.env, **(extra or {})},
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_state(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.3)


def _postgres_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "mariadb"],
)
def procs(request: Any, tmp_path_factory: Any) -> Iterator[Procs]:
    if not (HERE.parents[2] / "shared" / "data" / "dicom").is_dir():
        pytest.skip("real DICOM files not present in ../shared/data")
    tmp = tmp_path_factory.mktemp(f"procs-{request.param}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
        "MEDVAULT_DATA_DIR": str(tmp / "var"),
        "MEDVAULT_BLOB_DIR": str(tmp / "blobs"),
        "MEDVAULT_AUTO_ANALYSE": "0",
        "MEDVAULT_ANALYSIS_BACKEND": "fake_backend.FakeBackend",
        "MEDVAULT_WORKER_POLL_MS": "50",
        "MEDVAULT_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src")]),
    }
    db_name = ""
    if request.param == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'medvault.sqlite3'}"
    elif request.param == "mariadb":
        mysqldb = pytest.importorskip("MySQLdb", reason="mysqlclient (the [mysql] extra) missing")
        db_name = f"mv_analysis_procs_{uuid.uuid4().hex[:8]}"
        try:
            conn = mysqldb.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3)
        except mysqldb.OperationalError as exc:
            pytest.skip(f"MariaDB not reachable: {exc}")
        conn.cursor().execute(f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4")
        conn.close()
        env["DATABASE_URL"] = f"mysql://root@127.0.0.1:3306/{db_name}"
    else:
        psycopg = pytest.importorskip("psycopg")
        db_name = f"mv_analysis_procs_{uuid.uuid4().hex[:8]}"
        try:
            with psycopg.connect(
                _postgres_url("postgres"), autocommit=True, connect_timeout=3
            ) as conn:
                conn.execute(f'CREATE DATABASE "{db_name}"')
        except psycopg.OperationalError as exc:
            pytest.skip(f"PostgreSQL not reachable: {exc}")
        env["DATABASE_URL"] = _postgres_url(db_name)
    subprocess.run(
        [sys.executable, "-m", "medvault.cli", "migrate", "-v0", "--skip-checks"],
        env=env,
        check=True,
        cwd=ROOT,
        timeout=300,
    )
    yield Procs(env, tmp)
    if db_name and request.param == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db_name}`")
        conn.close()
    elif db_name:
        import psycopg

        with psycopg.connect(_postgres_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture
def installation(procs: Procs) -> Procs:
    procs.run("reset")
    return procs


def test_competing_workers_claim_each_job_exactly_once(installation: Procs, tmp_path: Path) -> None:
    ids = installation.seed(24)
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    extra = {
        "MEDVAULT_FAKE_ANALYSIS_LOG": str(log),
        "MEDVAULT_FAKE_ANALYSIS_GATE": str(gate),
        "MEDVAULT_FAKE_ANALYSIS_SECONDS": "0.02",
    }
    # Three processes: a pool of two (the default way to run it) and one more beside it.
    workers = [
        installation.worker("--once", "--concurrency", "2", extra=extra),
        installation.worker("--once", "--concurrency", "1", extra=extra),
    ]
    try:
        # Each process holds its first job at the gate until all three are inside one;
        # from then on they compete for the rest of the queue.
        deadline = time.monotonic() + 120
        while len({line.split()[0] for line in _lines(log)}) < 3:
            assert time.monotonic() < deadline, f"workers never all started: {_lines(log)}"
            time.sleep(0.05)
    finally:
        gate.touch()
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output[-3000:]
    state = installation.state()
    assert sorted(job["id"] for job in state["jobs"]) == sorted(ids)
    assert {job["status"] for job in state["jobs"]} == {"done"}
    assert {job["attempts"] for job in state["jobs"]} == {1}
    assert sorted(r["job_id"] for r in state["results"]) == sorted(ids)
    calls = [line.split() for line in _lines(log)]
    per_uid = Counter(uid for _, uid in calls)
    assert len(per_uid) == len(ids) and set(per_uid.values()) == {1}, "a job ran twice"
    assert len({pid for pid, _ in calls}) == 3


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_worker_job_is_rerun_and_stored_once(installation: Procs, tmp_path: Path) -> None:
    [job_id] = installation.seed(1)
    log, started = tmp_path / "calls.log", tmp_path / "started"
    lease = {"MEDVAULT_JOB_LEASE_SECONDS": "2", "MEDVAULT_FAKE_ANALYSIS_LOG": str(log)}
    doomed = installation.worker(
        "--concurrency",
        "1",
        extra={
            **lease,
            "MEDVAULT_FAKE_ANALYSIS_SECONDS": "60",
            "MEDVAULT_FAKE_ANALYSIS_STARTED": str(started),
        },
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert doomed.poll() is None, doomed.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.1)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    state = installation.state()
    assert state["jobs"][0]["status"] == "running" and state["results"] == []
    rescuer = installation.worker("--concurrency", "1", extra=lease)
    try:
        state = installation.wait_state(lambda s: s["jobs"][0]["status"] == "done", timeout=60)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        output, _ = rescuer.communicate(timeout=30)
    assert rescuer.returncode == 0, output[-3000:]
    [job] = state["jobs"]
    assert job["id"] == job_id and job["status"] == "done" and job["attempts"] == 2
    assert job["worker_id"].endswith(f":{rescuer.pid}")
    assert [r["job_id"] for r in state["results"]] == [job_id]
    pids = [line.split()[0] for line in log.read_text().splitlines()]
    assert pids == [str(doomed.pid), str(rescuer.pid)]


def test_sigterm_finishes_the_job_in_hand(installation: Procs, tmp_path: Path) -> None:
    [job_id] = installation.seed(1)
    started = tmp_path / "started"
    worker = installation.worker(
        "--concurrency",
        "1",
        extra={
            "MEDVAULT_FAKE_ANALYSIS_SECONDS": "1.5",
            "MEDVAULT_FAKE_ANALYSIS_STARTED": str(started),
        },
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output[-3000:]
    state = installation.state()
    assert state["jobs"][0]["status"] == "done" and state["jobs"][0]["attempts"] == 1
    assert [r["job_id"] for r in state["results"]] == [job_id]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_pool_forwards_sigterm_and_leaves_no_process_behind(installation: Procs) -> None:
    pool = installation.worker("--concurrency", "2")
    deadline = time.monotonic() + 60
    while len(children := _children(pool.pid)) < 2:
        assert pool.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # a child may still be starting: that must be a clean stop too
    pool.send_signal(signal.SIGTERM)
    output, _ = pool.communicate(timeout=60)
    assert pool.returncode == 0, output[-3000:]
    for child in children:
        assert (
            not Path(f"/proc/{child}").exists()
            or "Z" in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        )


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent that no longer exists)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_of_the_pool_leaves_no_child_running(installation: Procs) -> None:
    """Issue 13, finding 12: ``kill -9`` of ``medvault worker`` left its children running."""
    pool = installation.worker("--concurrency", "2")
    deadline = time.monotonic() + 60
    while len(children := _children(pool.pid)) < 2:
        assert pool.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    pool.kill()
    pool.wait(timeout=10)
    left = _wait_gone(children, 30)
    for pid in left:  # do not leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children {left} outlived their killed parent"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_of_serve_leaves_no_process_running(installation: Procs) -> None:
    """``medvault serve`` starts gunicorn and a worker pool: all of them die with it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "medvault.cli", "serve", "--port", str(port), "--workers", "1"],
        env={**installation.env, "MEDVAULT_ALLOWED_HOSTS": "127.0.0.1"}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    # serve -> (worker pool -> 2 workers) + (gunicorn master -> 1 gunicorn worker)
    while len(family := _descendants(serve.pid)) < 5:
        assert serve.poll() is None and time.monotonic() < deadline, family
        time.sleep(0.2)
    time.sleep(1.0)
    family = _descendants(serve.pid)
    serve.kill()
    serve.wait(timeout=10)
    left = _wait_gone(family, 40)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} outlived their killed parent"
