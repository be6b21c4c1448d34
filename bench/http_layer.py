"""What the HTTP server adds to STOW-RS and to a decompressed WADO-RS series (issue 15:
"consider a faster HTTP server only where measurements show that the HTTP layer matters").

Run:

    .venv/bin/python bench/http_layer.py [--requests 200] [--servers sync,gthread,granian]

One throw-away installation (SQLite + blob store in a temp dir, deferred compression as in
production). For the same WSGI application it measures, in one run:

* ``in-process``: Django's test client (the whole middleware stack, no HTTP);
* ``sync``: gunicorn with 4 sync workers (``medvault serve`` and ``bench/versus_orthanc.py``);
* ``gthread``: gunicorn's threaded worker, ``--gthread WxT`` workers x threads (default 2x4;
  it keeps connections alive, the sync worker closes each after its response);
* ``granian``: granian's WSGI interface with 4 workers (only when granian is installed; it is
  not a MedVault dependency: ``.venv/bin/pip install granian==2.8.7`` to include it).

Each server gets ``--requests`` one-part STOW-RS requests from ``--clients`` clients (slices of one
series, as bench/versus_orthanc.py sends), then the series is compressed (``medvault compress``)
and ``GET /dicomweb/studies/{study}`` asks for it in Explicit VR Little Endian (best of 3).
Per request: wall time at the client and CPU time of the server's processes (all workers,
from /proc). The HTTP layer's cost is a server's CPU per request less the in-process CPU.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "bench"))

from throwaway import bench_clinician, free_port, port_wait, throwaway_installation  # noqa: E402

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP = 16  # untimed requests first, so that every worker process has loaded the app


def tree_cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and all its descendants (live ones), from /proc."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


class ClientSessions(threading.local):
    """One kept-alive HTTP session per client thread, each sending ``headers``."""

    def __init__(self, headers: dict[str, str]) -> None:
        import requests

        self.session = requests.Session()
        self.session.headers.update(headers)


def stow_post(sessions: ClientSessions, url: str, part: tuple[bytes, str]) -> None:
    """One STOW-RS request of a prebuilt multipart body ``(body, content type)``."""
    r = sessions.session.post(url, data=part[0], headers={"Content-Type": part[1]}, timeout=60)
    assert r.status_code == 200, r.text[:300]


def server_command(kind: str, port: int, gthread: str = "2x4") -> list[str]:
    bind = f"127.0.0.1:{port}"
    if kind == "sync":
        return [str(BIN / "gunicorn"), "medvault.web.wsgi", "--bind", bind, "--workers", "4",
                "--timeout", "300", "--log-level", "warning"]
    if kind == "gthread":
        workers, threads = gthread.split("x")
        return [str(BIN / "gunicorn"), "medvault.web.wsgi", "--bind", bind, "--workers", workers,
                "--threads", threads, "--worker-class", "gthread", "--timeout", "300",
                "--log-level", "warning"]
    if kind == "granian":
        return [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", "4", "--log-level", "warning", "medvault.web.wsgi:application"]
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="one-part STOW-RS requests per server")
    parser.add_argument("--servers", default="sync,gthread,granian")
    parser.add_argument("--gthread", default="2x4", help="gthread workers x threads")
    parser.add_argument("--clients", type=int, default=1,
                        help="concurrent STOW-RS clients against the servers (in-process: always 1)")
    args = parser.parse_args()
    tmp = throwaway_installation("mv-bench-http-", MEDVAULT_COMPRESSION_DEFERRED="true",
                                 MEDVAULT_ALLOWED_HOSTS="testserver,127.0.0.1,localhost")
    from ctseries import ct_series_512
    from django.core.management import call_command
    from django.test import Client

    from medvault.accounts.tokens import token_create
    from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type, multipart_parse

    user, _group = bench_clinician()
    _, key = token_create(user=user, name="bench")
    auth = {"Authorization": f"Token {key}"}
    per = args.requests + WARM_UP  # slices of each series: warm-up and timed requests

    def bodies(seed: int) -> tuple[str, list[tuple[bytes, str]]]:
        study, files = ct_series_512(per, seed=seed)
        out = []
        for data in files:
            boundary = boundary_new()
            out.append((b"".join(multipart_build([(data, "application/dicom")], boundary)),
                        multipart_content_type(boundary, "application/dicom")))
        return study, out

    result: dict[str, Any] = {"requests": args.requests, "clients": args.clients, "gthread_shape": args.gthread,
                              "series_slices": per,
                              "load_average_start": os.getloadavg()}
    client = Client()
    # in-process: the same requests through Django's test client
    study, parts = bodies(seed=500)

    def post_in_process(part: tuple[bytes, str]) -> None:
        response = client.post("/dicomweb/studies", data=part[0], content_type=part[1],
                               HTTP_AUTHORIZATION=auth["Authorization"])
        assert response.status_code == 200, response.content[:300]

    for part in parts[:WARM_UP]:
        post_in_process(part)
    started, cpu = time.perf_counter(), time.process_time()
    for part in parts[WARM_UP:]:
        post_in_process(part)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    call_command("compress", "--keep", "0", verbosity=0, stdout=io.StringIO())

    def wado_in_process() -> float:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            response = client.get(f"/dicomweb/studies/{study}", HTTP_ACCEPT=ACCEPT,
                                  HTTP_AUTHORIZATION=auth["Authorization"])
            body = b"".join(response.streaming_content)
            best = min(best, time.perf_counter() - t)
            assert len(multipart_parse(body, response["Content-Type"])) == per
        return best

    result["in-process"] = {"stow_ms_per_request": round(wall / args.requests * 1000, 2),
                            "stow_cpu_ms_per_request": round(cpu / args.requests * 1000, 2),
                            "wado_series_s": round(wado_in_process(), 3)}
    env = dict(os.environ)
    for n, kind in enumerate(k for k in args.servers.split(",") if k):
        if kind == "granian" and not (BIN / "granian").exists():
            result[kind] = "not installed"
            continue
        study, parts = bodies(seed=600 + n)
        port = free_port()
        server = subprocess.Popen(server_command(kind, port, args.gthread), env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_wait(port, tries=300)
            url = f"http://127.0.0.1:{port}/dicomweb/studies"
            sessions = ClientSessions(auth)
            for part in parts[:WARM_UP]:
                stow_post(sessions, url, part)
            cpu0, started = tree_cpu_seconds(server.pid), time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(functools.partial(stow_post, sessions, url), parts[WARM_UP:]))
            wall = time.perf_counter() - started
            server_cpu = tree_cpu_seconds(server.pid) - cpu0
            subprocess.run([str(BIN / "medvault"), "compress", "--keep", "0"], env=env, cwd=ROOT,
                           check=True, stdout=subprocess.DEVNULL)
            best, wado_cpu = float("inf"), float("inf")
            for _ in range(3):
                c0, t = tree_cpu_seconds(server.pid), time.perf_counter()
                r = sessions.session.get(f"{url}/{study}", headers={"Accept": ACCEPT}, timeout=300)
                elapsed = time.perf_counter() - t
                assert r.status_code == 200
                assert len(multipart_parse(r.content, r.headers["Content-Type"])) == per
                best, wado_cpu = min(best, elapsed), min(wado_cpu, tree_cpu_seconds(server.pid) - c0)
            result[kind] = {"stow_ms_per_request": round(wall / args.requests * 1000, 2),
                            "stow_server_cpu_ms_per_request": round(server_cpu / args.requests * 1000, 2),
                            "wado_series_s": round(best, 3), "wado_server_cpu_s": round(wado_cpu, 3)}
        finally:
            server.terminate()
            server.wait(20)
        print(kind, json.dumps(result[kind]), file=sys.stderr)
    result["load_average_end"] = os.getloadavg()
    print(json.dumps(result))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
