"""Database outage: PostgreSQL stops for 10 s while clients keep uploading.

Requests during the outage fail with 503 and a clear message; after PostgreSQL is back,
MedVault works again without a restart; every acknowledged upload is there and bit-exact;
`medvault scrub` finds nothing missing or corrupt (an upload cut off by the outage may leave
an orphan blob, the designed crash residue, which `scrub --repair` removes).

Stopping PostgreSQL disturbs everything else using it, so this runs only with
`-m cluster` (CI: once, in the PostgreSQL pass, where nothing runs beside it).
MEDVAULT_OUTAGE_MODE=proxy rehearses it against a switchable TCP proxy instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import _cluster, pg_base_url
from .loadgen import run_load, verify
from .tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

OUTAGE_S = 10.0
RECOVERY_S = 5.0
MODE = os.environ.get("MEDVAULT_OUTAGE_MODE", "pg_ctlcluster")


class PgCtlOutage:
    """Stop and start the local PostgreSQL cluster (Debian's pg_ctlcluster)."""

    def __init__(self) -> None:
        versions = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
        if not shutil.which("pg_ctlcluster") or not versions or os.geteuid() != 0:
            pytest.skip("needs root and Debian's pg_ctlcluster to stop the local PostgreSQL")
        if "127.0.0.1" not in pg_base_url() and "localhost" not in pg_base_url():
            pytest.skip("PostgreSQL is not local")
        self.version = versions[-1].parent.name
        self.base_url = pg_base_url()

    def _ctl(self, action: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action],
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        # A watchdog outside this process restarts PostgreSQL after 60 s even if the test
        # process dies during the outage: others share this server.
        subprocess.Popen(
            ["sh", "-c", f"sleep 60; pg_isready -h 127.0.0.1 -q || pg_ctlcluster "
             f"--skip-systemctl-redirect {self.version} main start"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._ctl("stop")

    def start(self) -> None:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
            self._ctl("start")
        for _ in range(60):
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
                return
            time.sleep(0.5)


class ProxyOutage:
    def __init__(self) -> None:
        import dj_database_url

        cfg = dj_database_url.parse(pg_base_url() + "/postgres")
        self.proxy = TcpProxy((cfg["HOST"] or "127.0.0.1", int(cfg["PORT"] or 5432)))
        self.proxy.start()
        user = f"{cfg['USER']}@" if cfg["USER"] else ""
        self.base_url = f"postgres://{user}127.0.0.1:{self.proxy.port}"

    def stop(self) -> None:
        self.proxy.stop()

    def start(self) -> None:
        self.proxy.start()


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    switch = ProxyOutage() if MODE == "proxy" else PgCtlOutage()
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = switch.base_url + "/x"  # the cluster fixture's PG base
    try:
        gen = _cluster(tmp_path_factory, "outage")
        cluster = next(gen)
    finally:
        if old is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = old
    try:
        yield cluster, switch
    finally:
        switch.start()
        next(gen, None)


def test_database_outage_gives_503_then_recovers_without_restart(outage, shared_data: Path) -> None:
    cluster, switch = outage
    times: dict[str, float] = {}

    def take_database_away(run) -> None:
        time.sleep(8)
        times["down"] = time.monotonic() - run.t0
        try:
            switch.stop()
            time.sleep(3)
            try:
                with urllib.request.urlopen(f"{cluster.url}/healthz", timeout=10) as response:
                    times["healthz_during"] = response.status
            except urllib.error.HTTPError as exc:
                times["healthz_during"] = exc.code
            time.sleep(OUTAGE_S - 3)
        finally:
            switch.start()
            times["up"] = time.monotonic() - run.t0

    templates = [(shared_data / "dicom" / "single_ct" / "CT_small.dcm").read_bytes()]
    run, summary = run_load(
        url=cluster.url, token=cluster.token, password=None, templates=templates, clients=8,
        seconds=40, mix={"stow": 60, "qido": 20, "wado": 20}, during=take_database_away,
    )
    # This test process's own database connections (thread-local) died with the server too.
    from django.db import connections

    connections.close_all()
    summary["verify"] = verify(run)
    summary.update(times)
    print("\noutage: " + json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    print("failures by status:", {s: sum(1 for f in summary["failures"] if f["status"] == s)
                                  for s in {f["status"] for f in summary["failures"]}})
    down, up = times["down"], times["up"]
    assert times["healthz_during"] == 503

    failures = [s for s in run.samples if not s.ok]
    assert failures, "the outage did not affect any request"
    for failure in failures:
        assert failure.status == 503, failure
        assert "database unavailable" in failure.detail, failure
        assert down - 1 <= failure.started + failure.latency, failure
        assert failure.started <= up + RECOVERY_S, failure
    after = [s for s in run.samples if s.started > up + RECOVERY_S]
    assert after and all(s.ok for s in after), "MedVault did not recover by itself"
    assert summary["verify"]["problem_count"] == 0, summary["verify"]["problems"]
    with urllib.request.urlopen(f"{cluster.url}/healthz", timeout=10) as response:
        assert response.status == 200

    # No writer may run while scrub --repair --min-age 0 deletes what no row points to yet.
    cluster.settle_analysis()
    cluster.settle_compression()
    scrub = cluster.medvault("scrub", "--min-age", "0")
    report = json.loads(scrub.stdout)
    assert report["missing"] == [] and report["corrupt"] == [], report
    if report["orphans"]:
        cluster.medvault("scrub", "--repair", "--min-age", "0")
        again = cluster.medvault("scrub", "--min-age", "0")
        assert again.returncode == 0, again.stdout
    # The analysis worker survived the outage too.
    worker_pid = int(cluster.pidfile("worker").read_text())
    assert Path(f"/proc/{worker_pid}").exists(), "the analysis worker died in the outage"
