"""Load, failover, slow-loris and upload limits against `make cluster` (nginx + 2 gunicorn app
servers + 1 worker on PostgreSQL). Marked ``cluster``: runs only when -m names it (see conftest)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import Cluster
from .loadgen import run_load, verify

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

LOAD_SECONDS = float(os.environ.get("MEDVAULT_LOAD_SECONDS", "60"))
LOAD_CLIENTS = int(os.environ.get("MEDVAULT_LOAD_CLIENTS", "32"))


def _templates(shared_data: Path) -> list[bytes]:
    return [(shared_data / "dicom" / "single_ct" / "CT_small.dcm").read_bytes(),
            (shared_data / "dicom" / "single_mr" / "MR_small.dcm").read_bytes()]


def _report(name: str, summary: dict) -> None:
    print(f"\n{name}: " + json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    target = os.environ.get("MEDVAULT_LOAD_REPORT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / f"{name}.json").write_text(json.dumps(summary, indent=1))


def _get(url: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_cluster_answers_through_nginx_and_each_app_server(cluster: Cluster) -> None:
    assert _get(f"{cluster.url}/healthz") == 200
    for port in cluster.app_ports:
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
    assert _get(f"{cluster.url}/") == 200


def test_load_32_clients_every_acknowledged_upload_is_bit_exact(
    cluster: Cluster, shared_data: Path
) -> None:
    run, summary = run_load(url=cluster.url, token=cluster.token, password=cluster.password,
                            templates=_templates(shared_data), clients=LOAD_CLIENTS,
                            seconds=LOAD_SECONDS)
    summary["verify"] = verify(run)
    _report("load", summary)
    assert summary["errors"] == 0, summary["failures"][:10]
    assert summary["uploads_acked"] > 0
    for op in ("stow", "qido", "wado", "page", "analysis"):
        assert summary["per_op"][op]["requests"] > 0, op
    assert summary["verify"]["problem_count"] == 0, summary["verify"]["problems"]
    # Both app servers took part.
    for port in cluster.app_ports:
        log = (cluster.dir / "log" / f"app-{port}-access.log").read_text()
        assert "/dicomweb/studies" in log, f"app server {port} served nothing"


def test_failover_sigkill_one_app_server_mid_run(cluster: Cluster, shared_data: Path) -> None:
    victim = cluster.app_ports[0]
    killed_at: list[float] = []

    def kill_one(run) -> None:
        time.sleep(10)
        pids = cluster.app_pids(victim)
        killed_at.append(time.monotonic() - run.t0)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    clients = min(LOAD_CLIENTS, 16)
    run, summary = run_load(url=cluster.url, token=cluster.token, password=cluster.password,
                            templates=_templates(shared_data), clients=clients,
                            seconds=max(30.0, LOAD_SECONDS / 2), during=kill_one)
    summary["verify"] = verify(run)
    summary["killed_at_s"] = killed_at[0]
    _report("failover", summary)
    kill_t = killed_at[0]
    # Only requests in flight at the moment of the kill may fail (each client has at most one).
    failures = [s for s in run.samples if not s.ok]
    late = [f for f in failures if f.started > kill_t + 0.5]
    early = [f for f in failures if f.started + f.latency < kill_t - 0.1]
    assert not late and not early, failures
    assert summary["errors"] <= clients
    # The service went on: requests after the kill succeeded, through the other server.
    after = [s for s in run.samples if s.started > kill_t + 1]
    assert after and all(s.ok for s in after)
    assert summary["verify"]["problem_count"] == 0, summary["verify"]["problems"]
    assert _get(f"{cluster.url}/healthz") == 200


def test_slow_loris_connections_are_closed_by_nginx(cluster: Cluster) -> None:
    host, port = "127.0.0.1", int(cluster.url.rsplit(":", 1)[1])
    slow = []
    for _ in range(40):
        sock = socket.create_connection((host, port), timeout=20)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(sock)
    started = time.monotonic()
    # Meanwhile a normal request is served at once.
    assert _get(f"{cluster.url}/healthz", timeout=5) == 200
    assert time.monotonic() - started < 5
    # nginx drops a client that has not finished its headers within client_header_timeout (10 s).
    for sock in slow:
        try:
            sock.sendall(b"a")
            data = sock.recv(4096)
        except OSError:
            data = b""
        finally:
            elapsed = time.monotonic() - started
        assert not data.startswith(b"HTTP/1.1 200"), data[:100]
        assert elapsed < 15, f"a slow client held its connection for {elapsed:.0f} s"
        sock.close()
    assert time.monotonic() - started >= 9  # cut off by the timeout, not at once


def test_nginx_refuses_a_body_over_the_limit_before_it_reaches_an_app_server(
    cluster: Cluster,
) -> None:
    host, port = "127.0.0.1", int(cluster.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/related; type=\"application/dicom\"; boundary=x\r\n"
            + f"Content-Length: {3 * 1024**3}\r\nAuthorization: Token {cluster.token}\r\n\r\n"
            .encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_backup_under_load_restores_into_a_fresh_installation(
    cluster: Cluster, shared_data: Path, tmp_path: Path
) -> None:
    """`medvault backup` while uploads go on: the snapshot restores into an empty installation
    with every row's blob present and intact."""
    import psycopg

    from .conftest import pg_base_url, pg_recreate

    dest = tmp_path / "backup"
    result: dict = {}
    cluster_db = cluster.env["DATABASE_URL"]
    with psycopg.connect(cluster_db) as conn:
        existing = conn.execute("SELECT count(*) FROM archive_instance").fetchone()[0]

    def backup_midway(run) -> None:
        time.sleep(5)
        result["started"] = time.monotonic() - run.t0
        result["backup"] = cluster.medvault("backup", str(dest))

    run, summary = run_load(url=cluster.url, token=cluster.token, password=None,
                            templates=_templates(shared_data), clients=8, seconds=15,
                            mix={"stow": 70, "qido": 15, "wado": 15}, during=backup_midway)
    assert result["backup"].returncode == 0, result["backup"].stderr
    acked_before = sum(1 for s in run.samples
                       if s.op == "stow" and s.ok and s.started + s.latency < result["started"])

    pg_recreate("mv_ops_restored")
    restored_dir = tmp_path / "restored"
    env = dict(cluster.env, DATABASE_URL=f"{pg_base_url()}/mv_ops_restored",
               MEDVAULT_DATA_DIR=str(restored_dir), MEDVAULT_BLOB_DIR=str(restored_dir / "blobs"))
    fresh = Cluster(url="", token="", password="", dir=restored_dir, env=env, app_ports=[])
    assert fresh.medvault("migrate", "--noinput").returncode == 0
    restore = fresh.medvault("restore", str(dest))
    assert restore.returncode == 0, restore.stderr
    scrub = json.loads(fresh.medvault("scrub", "--min-age", "0").stdout)
    assert scrub["missing"] == [] and scrub["corrupt"] == [], scrub
    with psycopg.connect(f"{pg_base_url()}/mv_ops_restored") as conn:
        restored = conn.execute("SELECT count(*) FROM archive_instance").fetchone()[0]
    with psycopg.connect(cluster_db) as conn:
        final = conn.execute("SELECT count(*) FROM archive_instance").fetchone()[0]
    # Everything acknowledged before the backup began is in it; nothing that never existed is.
    assert existing + acked_before <= restored <= final
