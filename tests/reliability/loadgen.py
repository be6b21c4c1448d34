"""A bounded load generator for a running MedVault (e.g. `make cluster`).

N client threads for D seconds mix STOW-RS uploads, QIDO-RS queries, WADO-RS retrievals,
page views and analysis requests. Every upload that MedVault acknowledged (200 with the
instance in ReferencedSOPSequence) is retrieved afterwards, decompressed to Explicit VR
Little Endian, and its pixel data compared with what was sent.

    .venv/bin/python tests/reliability/loadgen.py --url http://127.0.0.1:8080 \\
        --token-file var/cluster/admin_token --password-file var/cluster/admin_password \\
        --clients 32 --seconds 60 --template ../shared/data/dicom/single_ct/CT_small.dcm

Prints one JSON summary (throughput, p50/p95/p99 per operation, errors, verification).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import re
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import requests

EXPLICIT_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.8.498"
MIX = {"stow": 35, "qido": 25, "wado": 20, "page": 15, "analysis": 5}


@dataclass
class Sample:
    op: str
    status: int  # HTTP status; 0 when no response arrived (connection error)
    ok: bool
    started: float  # seconds since the run started
    latency: float
    detail: str = ""


@dataclass
class Acked:
    study: str
    series: str
    sop: str
    pixel_sha256: str


@dataclass
class Run:
    url: str
    token: str
    password: str | None
    templates: list[bytes]
    clients: int
    seconds: float
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    samples: list[Sample] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    uploaded_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    t0: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = "mvload" + hashlib.sha1(str(random.random()).encode()).hexdigest()[:16]
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _split_multipart(body: bytes, content_type: str) -> list[bytes]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return []
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.partition(b"\r\n\r\n")
        parts.append(content[:-2] if content.endswith(b"\r\n") else content)
    return parts


class Client:
    """One simulated user: its own HTTP session, patient, study and series."""

    def __init__(self, run: Run, index: int, run_id: str) -> None:
        self.run = run
        self.index = index
        self.rng = random.Random(index * 7919 + 17)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {run.token}"
        self.pages = requests.Session()
        self.logged_in = False
        self.n = 0
        self.stored = 0  # uploads of this client that MedVault acknowledged
        self.run_id = run_id
        self.template = pydicom.dcmread(io.BytesIO(run.templates[index % len(run.templates)]))
        self.base_pixels = bytes(self.template.PixelData)
        self.study = f"{UID_ROOT}.{run_id}.{index}.1"
        self.series = f"{UID_ROOT}.{run_id}.{index}.2"
        self.patient = f"LOAD-{run_id}-{index}"

    def _timed(self, op: str, call: Callable[[], tuple[int, bool, str]]) -> None:
        started = time.monotonic()
        try:
            status, ok, detail = call()
        except requests.RequestException as exc:
            status, ok, detail = 0, False, type(exc).__name__
        self.run.record(Sample(op, status, ok, started - self.run.t0,
                               time.monotonic() - started, detail))

    def _instance(self) -> tuple[bytes, str, str]:
        self.n += 1
        ds = self.template
        sop = f"{UID_ROOT}.{self.run_id}.{self.index}.3.{self.n}"
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID = self.study
        ds.SeriesInstanceUID = self.series
        ds.PatientID = self.patient
        ds.InstanceNumber = self.n
        pixels = bytearray(self.base_pixels)
        # Distinct pixels per instance (values stay within 11 bits, valid for any BitsStored).
        pixels[0:4] = struct.pack("<HH", self.n & 0x7FF, (self.n >> 11) & 0x7FF)
        ds.PixelData = bytes(pixels)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue(), sop, hashlib.sha256(pixels).hexdigest()

    def stow(self) -> tuple[int, bool, str]:
        data, sop, pixel_sha = self._instance()
        body, ctype = _multipart([data])
        response = self.http.post(f"{self.run.url}/dicomweb/studies", data=body,
                                  headers={"Content-Type": ctype,
                                           "Accept": "application/dicom+json"}, timeout=120)
        if response.status_code != 200:
            return response.status_code, False, response.text[:200]
        referenced = response.json().get("00081199", {}).get("Value", [])
        uids = {item.get("00081155", {}).get("Value", [None])[0] for item in referenced}
        if sop not in uids:
            return response.status_code, False, "200 without the instance in ReferencedSOPSequence"
        self.stored += 1
        with self.run.lock:
            self.run.acked.append(Acked(self.study, self.series, sop, pixel_sha))
            self.run.uploaded_bytes += len(data)
        return 200, True, ""

    def _some_acked(self) -> Acked | None:
        with self.run.lock:
            if not self.run.acked:
                return None
            return self.rng.choice(self.run.acked)

    def qido(self) -> tuple[int, bool, str]:
        if self.rng.random() < 0.5:
            url, params = f"{self.run.url}/dicomweb/studies", {"PatientID": self.patient,
                                                               "limit": "10"}
        else:
            url, params = f"{self.run.url}/dicomweb/studies/{self.study}/instances", {"limit": "20"}
        response = self.http.get(url, params=params, headers={"Accept": "application/dicom+json"},
                                 timeout=60)
        # Before this client's first acknowledged upload its study may not exist yet.
        ok = response.status_code in (200, 204) or (response.status_code == 404 and not self.stored)
        return response.status_code, ok, "" if ok else response.text[:200]

    def wado(self) -> tuple[int, bool, str]:
        target = self._some_acked()
        if target is None:
            return self.qido()
        response = self.http.get(
            f"{self.run.url}/dicomweb/studies/{target.study}/series/{target.series}/instances/"
            f"{target.sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            timeout=60,
        )
        ok = response.status_code == 200 and len(response.content) > 1000
        return response.status_code, ok, "" if ok else response.text[:200]

    def _login(self) -> tuple[int, str]:
        """Log in to the web pages; ``(0, "")`` on success, else the failing status and detail.

        Only a login that answered with its redirect and left a session cookie counts: a POST
        cut off mid-way (e.g. its app server killed; nginx does not retry a POST) must not leave
        the client believing it is logged in, or its later page views would fail as 302s.
        """
        login = f"{self.run.url}/accounts/login/"
        form = self.pages.get(login, timeout=30)
        if form.status_code != 200:
            return form.status_code, f"login form: {form.text[:160]}"
        token = self.pages.cookies.get("csrftoken", "")
        answer = self.pages.post(login, data={"username": "admin", "password": self.run.password,
                                              "csrfmiddlewaretoken": token},
                                 headers={"Referer": login}, timeout=30, allow_redirects=False)
        if answer.status_code != 302 or "sessionid" not in self.pages.cookies:
            return answer.status_code, f"login: {answer.text[:160]}"
        self.logged_in = True
        return 0, ""

    def page(self) -> tuple[int, bool, str]:
        if self.run.password and not self.logged_in:
            status, detail = self._login()
            if status:
                return status, False, detail
        path = self.rng.choice(["/", "/studies/"]) if self.logged_in else "/"
        response = self.pages.get(f"{self.run.url}{path}", timeout=60, allow_redirects=False)
        ok = response.status_code == 200
        return response.status_code, ok, "" if ok else f"{path}: {response.text[:200]}"

    def analysis(self) -> tuple[int, bool, str]:
        target = self._some_acked()
        if target is None:
            return self.qido()
        response = self.http.post(f"{self.run.url}/api/v1/analyses",
                                  json={"sop_instance_uid": target.sop, "model": "lung-ct"},
                                  timeout=60)
        # A refusal (e.g. no model installed, 4xx with a reason) is an answer; 5xx is not.
        ok = response.status_code < 500
        return response.status_code, ok, "" if ok else response.text[:200]

    def loop(self) -> None:
        ops = list(self.run.mix)
        weights = [self.run.mix[o] for o in ops]
        deadline = self.run.t0 + self.run.seconds
        while time.monotonic() < deadline and not self.run.stop.is_set():
            op = self.rng.choices(ops, weights)[0]
            self._timed(op, getattr(self, op))


def verify(run: Run, workers: int = 8) -> dict[str, Any]:
    """Retrieve every acknowledged upload decompressed; compare pixel data with what was sent."""
    session_local = threading.local()

    def check(item: Acked) -> str | None:
        http = getattr(session_local, "http", None)
        if http is None:
            http = session_local.http = requests.Session()
            http.headers["Authorization"] = f"Token {run.token}"
        for attempt in range(3):
            try:
                response = http.get(
                    f"{run.url}/dicomweb/studies/{item.study}/series/{item.series}/instances/"
                    f"{item.sop}",
                    headers={"Accept": 'multipart/related; type="application/dicom"; '
                                       f"transfer-syntax={EXPLICIT_LE}"},
                    timeout=120,
                )
                break
            except requests.RequestException as exc:
                if attempt == 2:
                    return f"{item.sop}: {exc}"
                time.sleep(1)
        if response.status_code != 200:
            return f"{item.sop}: HTTP {response.status_code}"
        parts = _split_multipart(response.content, response.headers.get("Content-Type", ""))
        if len(parts) != 1:
            return f"{item.sop}: {len(parts)} parts"
        ds = pydicom.dcmread(io.BytesIO(parts[0]))
        if ds.SOPInstanceUID != item.sop:
            return f"{item.sop}: got {ds.SOPInstanceUID}"
        if hashlib.sha256(ds.PixelData).hexdigest() != item.pixel_sha256:
            return f"{item.sop}: pixel data differs"
        return None

    with ThreadPoolExecutor(workers) as pool:
        problems = [p for p in pool.map(check, list(run.acked)) if p]
    return {"checked": len(run.acked), "problems": problems[:50], "problem_count": len(problems)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(run: Run, elapsed: float) -> dict[str, Any]:
    per_op: dict[str, Any] = {}
    for op in run.mix:
        samples = [s for s in run.samples if s.op == op]
        lat = [s.latency * 1000 for s in samples if s.ok]
        per_op[op] = {
            "requests": len(samples),
            "errors": sum(1 for s in samples if not s.ok),
            "p50_ms": round(percentile(lat, 50), 1),
            "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1),
        }
    ok_lat = [s.latency * 1000 for s in run.samples if s.ok]
    return {
        "clients": run.clients,
        "seconds": round(elapsed, 1),
        "requests": len(run.samples),
        "errors": sum(1 for s in run.samples if not s.ok),
        "throughput_rps": round(len(run.samples) / elapsed, 1) if elapsed else 0.0,
        "uploads_acked": len(run.acked),
        "uploads_per_s": round(len(run.acked) / elapsed, 1) if elapsed else 0.0,
        "upload_mb_per_s": round(run.uploaded_bytes / elapsed / 1e6, 2) if elapsed else 0.0,
        "p50_ms": round(percentile(ok_lat, 50), 1),
        "p95_ms": round(percentile(ok_lat, 95), 1),
        "p99_ms": round(percentile(ok_lat, 99), 1),
        "per_op": per_op,
        "failures": [
            {"op": s.op, "status": s.status, "t": round(s.started, 2),
             "latency": round(s.latency, 2), "detail": s.detail[:160]}
            for s in run.samples if not s.ok
        ][:200],
    }


def run_load(
    *, url: str, token: str, password: str | None, templates: list[bytes], clients: int,
    seconds: float, mix: dict[str, int] | None = None,
    during: Callable[[Run], None] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Run the load; ``during(run)`` runs in its own thread meanwhile (fault injection)."""
    run = Run(url=url.rstrip("/"), token=token, password=password, templates=templates,
              clients=clients, seconds=seconds, mix=dict(mix or MIX))
    run_id = str(int(time.time() * 1000) % 10**12)
    workers = [Client(run, i, run_id) for i in range(clients)]
    run.t0 = time.monotonic()
    threads = [threading.Thread(target=w.loop, daemon=True) for w in workers]
    side = threading.Thread(target=during, args=(run,), daemon=True) if during else None
    for thread in threads:
        thread.start()
    if side:
        side.start()
    for thread in threads:
        thread.join(seconds + 300)
    elapsed = time.monotonic() - run.t0
    if side:
        side.join(120)
    return run, summarise(run, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token-file", type=Path, default=Path("var/cluster/admin_token"))
    parser.add_argument("--password-file", type=Path, default=Path("var/cluster/admin_password"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--template", type=Path, action="append")
    args = parser.parse_args()
    templates = [p.read_bytes() for p in (args.template or [
        Path(__file__).resolve().parents[3] / "shared/data/dicom/single_ct/CT_small.dcm"])]
    password = args.password_file.read_text().strip() if args.password_file.exists() else None
    run, summary = run_load(url=args.url, token=args.token_file.read_text().strip(),
                            password=password, templates=templates, clients=args.clients,
                            seconds=args.seconds)
    summary["verify"] = verify(run)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
