"""The local cluster (scripts/cluster.sh) as a fixture for the load and fault tests.

They need nginx, PostgreSQL and a few minutes, so they carry the ``cluster`` marker and run only
when ``-m`` names it (CI: ``-m '(not browser) or cluster'`` in its PostgreSQL pass only). The cluster gets its own
database (mv_ops_cluster, dropped and created afresh), its own ports and data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"
SKIP_REASON = (
    "cluster tests (load, failover, database outage, slow-loris) run only when -m names the "
    "cluster marker: they start nginx + gunicorn on PostgreSQL and take minutes"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A plain run (or -m 'not browser') must not start a cluster; -m 'cluster' (or an
    # expression naming it) selects them, and -m's own logic then decides.
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_base_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url.rsplit("/", 1)[0]
    return "postgres://postgres@127.0.0.1:5432"


def pg_recreate(name: str) -> None:
    import dj_database_url
    import psycopg
    from psycopg import sql

    cfg = dj_database_url.parse(f"{pg_base_url()}/postgres")
    with psycopg.connect(host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"],
                         password=cfg["PASSWORD"] or None, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class Cluster:
    url: str
    token: str
    password: str
    dir: Path
    env: dict[str, str]
    app_ports: list[int]

    def pidfile(self, name: str) -> Path:
        return self.dir / "run" / f"{name}.pid"

    def app_pids(self, port: int) -> list[int]:
        """The gunicorn master of one app server and its workers."""
        master = int(self.pidfile(f"app-{port}").read_text())
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [master, *map(int, children)]

    def medvault(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / ".venv" / "bin" / "medvault"), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def settle_analysis(self, timeout: float = 300) -> None:
        """Wait until the cluster's worker has no analysis job queued or running.

        A job stores its results as DICOM instances (SR and heat-map) and a heat-map blob:
        each blob is written before the row that points to it commits, so while the worker
        runs, ``scrub --min-age 0`` sees blobs in flight as orphans, and ``--repair`` would
        delete them under it (docs/operations.md: --min-age 0 only with no writer running).
        """
        code = (
            "from medvault.analysis.models import AnalysisJob;"
            "from medvault.archive.jobs import JobState;"
            "print(AnalysisJob.objects.filter(status__in=[JobState.QUEUED, JobState.RUNNING]).count())"
        )
        deadline = time.monotonic() + timeout
        while True:
            left = self.medvault("shell", "-c", code, timeout=timeout)
            if left.stdout.strip().splitlines()[-1:] == ["0"]:
                return
            assert time.monotonic() < deadline, f"analysis jobs still waiting: {left.stdout}"
            time.sleep(2)

    def settle_compression(self, timeout: float = 300) -> None:
        """Finish the deferred-compression queue (alongside the cluster's worker).

        Until then a worker may have written a re-encoded blob that its row does not point
        to yet: ``scrub --min-age 0`` would call it an orphan, and ``--repair`` would delete
        it under the worker (the default --min-age of an hour is what protects it).
        """
        deadline = time.monotonic() + timeout
        while True:
            done = self.medvault("compress", timeout=timeout)
            if json.loads(done.stdout)["pending"] == 0:
                return
            assert time.monotonic() < deadline, done.stdout
            time.sleep(1)


def _cluster(tmp_path_factory: pytest.TempPathFactory, name: str):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists() and os.geteuid() != 0:
        pytest.skip("nginx is not installed and cannot be installed without root")
    database = f"mv_ops_{name}"
    pg_recreate(database)
    directory = tmp_path_factory.mktemp(f"cluster-{name}")
    app_ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDVAULT_", "DJANGO_"))}
    env.update(
        CLUSTER_DIR=str(directory),
        CLUSTER_PORT=str(free_port()),
        CLUSTER_APP_PORTS=" ".join(map(str, app_ports)),
        CLUSTER_WORKERS="2",
        CLUSTER_DATABASE_URL=f"{pg_base_url()}/{database}",
    )
    started = subprocess.run([str(CLUSTER_SH), "start"], env=env, capture_output=True, text=True,
                             timeout=600)
    if started.returncode != 0:
        subprocess.run([str(CLUSTER_SH), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"make cluster failed:\n{started.stdout}\n{started.stderr}")
    # The environment the cluster's processes run with, for `medvault` commands against it.
    run_env = dict(env, DATABASE_URL=env["CLUSTER_DATABASE_URL"], MEDVAULT_DATA_DIR=str(directory),
                   MEDVAULT_BLOB_DIR=str(directory / "blobs"))
    cluster = Cluster(
        url=f"http://127.0.0.1:{env['CLUSTER_PORT']}",
        token=(directory / "admin_token").read_text().strip(),
        password=(directory / "admin_password").read_text().strip(),
        dir=directory, env=run_env, app_ports=app_ports,
    )
    assert f"MedVault cluster is running at {cluster.url}/" in started.stdout
    try:
        yield cluster
    finally:
        subprocess.run([str(CLUSTER_SH), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    yield from _cluster(tmp_path_factory, "cluster")


@pytest.fixture(scope="module")
def outage_cluster(tmp_path_factory: pytest.TempPathFactory):
    yield from _cluster(tmp_path_factory, "outage")
