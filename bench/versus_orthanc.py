"""MedVault versus Orthanc, on one machine in one run, on the same generated CT series.

    .venv/bin/python bench/versus_orthanc.py [--instances 500] [--fill 10000] [--json out.json]

Both servers run inside a private network namespace (``unshare --net``, loopback only;
Orthanc 1.10 cannot bind one address). MedVault: gunicorn (4 workers) + ``medvault
dicomserver``, SQLite, lossless compression as configured (default JPEG-LS, deferred: ingest
keeps what arrived and ``medvault compress`` re-encodes it afterwards; ``--inline`` compresses
inside ingest instead). Orthanc: Debian's 1.10 with the DICOMweb plugin, default settings
(no storage compression).

Measured, each phase on fresh SOP Instance UIDs so that nothing is a duplicate:
* STOW-RS ingest with 1 client and with 4 clients (one instance per request);
* C-STORE ingest (pynetdicom SCU on one association, TCP_NODELAY on the SCU side);
* with deferred compression: the time ``medvault compress`` (one process per core) takes to
  re-encode the three stored series, and from it the sustained rate of each ingest phase including its share of
  compression (1 / (1/acknowledged + compression seconds per instance)); both are reported;
* with deferred compression, measured: STOW-RS with 4 clients while ``medvault worker`` runs
  beside it (as in production), acknowledged rate and rate until the last instance is
  compressed;
* disk bytes used by the stored series against the input bytes (after compression; with
  deferred compression also before it);
* WADO-RS retrieval of one whole series;
* QIDO-RS by PatientID after filling both archives to ``--fill`` more studies (small
  instances, one per study), p50 and p95 over 200 queries.
Every figure is reported for both servers with the ratio MedVault / Orthanc.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import requests
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import generate_series  # noqa: E402  (bench/ingest.py: the 512x512 CT generator)
from peers.orthanc_env import MV_DICOM, OR_DICOM, Peers, reexec_in_private_network  # noqa: E402

from medvault.core.dicom.multipart import (  # noqa: E402
    boundary_new,
    multipart_build,
    multipart_content_type,
    multipart_parse,
)

STOW_TYPE = "application/dicom"


def reuid(files: list[bytes], patient_id: str) -> list[bytes]:
    """The same pixels under new study/series/instance UIDs (so a phase never hits duplicates)."""
    study, series = generate_uid(), generate_uid()
    out = []
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient_id
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def fill_instances(count: int) -> list[bytes]:
    """Small CT instances, one study and one patient each, to grow the index."""
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(99)
    out = []
    for i in range(count):
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.Rows = ds.Columns = 16
        ds.PixelData = rng.integers(0, 2000, size=(16, 16), dtype=np.int16).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"FILL-{i:06d}"
        ds.PatientName = f"Fill^Patient{i}"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


class Target:
    def __init__(self, name: str, stow_url: str, qido_url: str, auth: Any) -> None:
        self.name, self.stow_url, self.qido_url, self.auth = name, stow_url, qido_url, auth
        self.session = threading.local()

    def http(self) -> requests.Session:
        if not hasattr(self.session, "s"):
            self.session.s = requests.Session()
            self.session.s.auth = self.auth
        return self.session.s

    def stow(self, files: list[bytes]) -> None:
        boundary = boundary_new()
        body = b"".join(multipart_build([(f, STOW_TYPE) for f in files], boundary))
        r = self.http().post(self.stow_url, data=body, timeout=600,
                             headers={"Content-Type": multipart_content_type(boundary, STOW_TYPE),
                                      "Accept": "application/dicom+json"})
        if r.status_code != 200:
            raise RuntimeError(f"{self.name} STOW-RS answered {r.status_code}: {r.text[:300]}")


def stow_rate(target: Target, files: list[bytes], clients: int, per_request: int = 1) -> float:
    batches = [files[i:i + per_request] for i in range(0, len(files), per_request)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(target.stow, batches))
    return len(files) / (time.perf_counter() - start)


def cstore_rate(port: int, called: str, files: list[bytes]) -> float:
    import socket

    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    def nodelay_set(event: Any) -> None:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=[(evt.EVT_CONN_OPEN, nodelay_set)])
    if not assoc.is_established:
        raise RuntimeError(f"association with {called} failed")
    start = time.perf_counter()
    for ds in datasets:
        status = assoc.send_c_store(ds)
        if status.Status != 0:
            raise RuntimeError(f"C-STORE to {called} answered 0x{status.Status:04X}")
    elapsed = time.perf_counter() - start
    assoc.release()
    return len(files) / elapsed


def stow_with_worker(target: Target, files: list[bytes], peers: Any, work: Path,
                     processes: int) -> tuple[float, float]:
    """(acknowledged rate, rate until the compression queue is empty) of 4-client STOW-RS while
    ``medvault worker`` runs beside the app server, as in production."""
    import signal
    import sqlite3

    worker = subprocess.Popen([str(Path(sys.executable).parent / "medvault"), "worker", "--concurrency",
                               str(processes)], env=peers.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # let the worker processes start (and load their models) first
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(target.stow, [[f] for f in files]))
        acked = time.perf_counter() - start
        db = sqlite3.connect(str(work / "medvault" / "medvault.sqlite3"), timeout=60)
        while db.execute("SELECT COUNT(*) FROM archive_compressiontask WHERE swapped_at IS NULL "
                         "AND attempts < 3").fetchone()[0]:
            if worker.poll() is not None or time.perf_counter() - start > 900:
                raise RuntimeError("medvault worker stopped, or the queue did not drain in 15 min")
            time.sleep(0.2)
        total = time.perf_counter() - start
        db.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return len(files) / acked, len(files) / total


def dir_bytes(path: Path, skip_suffixes: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.endswith(skip_suffixes))


def wado_series_seconds(url: str, auth: Any, accept: str) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        r = requests.get(url, auth=auth, headers={"Accept": accept}, timeout=600)
        r.raise_for_status()
        count = len(multipart_parse(r.content, r.headers["Content-Type"]))
        best = min(best, time.perf_counter() - start)
    return best, count


def qido_latency(url: str, auth: Any, patient_ids: list[str]) -> dict[str, float]:
    session = requests.Session()
    session.auth = auth
    times = []
    for pid in patient_ids:
        start = time.perf_counter()
        r = session.get(url, params={"PatientID": pid}, headers={"Accept": "application/dicom+json"}, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        if len(r.json()) != 1:
            raise RuntimeError(f"QIDO for {pid} found {len(r.json())} studies")
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(len(times) * 0.95) - 1]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mv-vs-orthanc-"))
    print(f"generating {args.instances} CT instances (512x512, 16-bit) ...", file=sys.stderr)
    base = generate_series(args.instances, seed=5)
    input_bytes = sum(len(f) for f in base)
    result: dict[str, Any] = {"instances": args.instances, "input_bytes_per_series": input_bytes}
    mv_env = {"MEDVAULT_COMPRESSION_DEFERRED": "false" if args.inline else "true"}
    if args.codec:
        mv_env["MEDVAULT_COMPRESSION"] = args.codec
    result["medvault_compression"] = f"{args.codec or 'jpegls'}, {'inline' if args.inline else 'deferred'}"
    with Peers(work, gunicorn_workers=4, known_aes=("BENCHSCU",), medvault_env=mv_env) as peers:
        mv = Target("MedVault", f"{peers.mv}/dicomweb/studies", f"{peers.mv}/dicomweb/studies", peers.mv_auth)
        orth = Target("Orthanc", f"{peers.orthanc}/dicom-web/studies", f"{peers.orthanc}/dicom-web/studies", None)
        for clients in (1, 4):
            for target in (mv, orth):
                files = reuid(base, f"STOW{clients}-{target.name}")
                rate = stow_rate(target, files, clients)
                result[f"stow_{clients}_client_per_s_{target.name}"] = round(rate, 1)
                print(f"STOW-RS {clients} client(s) {target.name}: {rate:.1f}/s", file=sys.stderr)
        for name, port, called in (("MedVault", MV_DICOM, "MEDVAULT"), ("Orthanc", OR_DICOM, "ORTHANC")):
            files = reuid(base, f"CSTORE-{name}")
            rate = cstore_rate(port, called, files)
            result[f"cstore_per_s_{name}"] = round(rate, 1)
            print(f"C-STORE {name}: {rate:.1f}/s", file=sys.stderr)
        # Three copies of the series are stored on each side by now.
        stored_input = 3 * input_bytes
        if not args.inline:
            before = dir_bytes(work / "medvault" / "blobs")
            result["disk_ratio_before_compression_MedVault"] = round(before / stored_input, 3)
            start = time.perf_counter()
            # One process per core, as `medvault worker --concurrency N` runs (tasks are claimed
            # with a lease, so they share the queue). --keep 0: no backup runs here, so the
            # replaced blobs go at once.
            drains = [subprocess.Popen([str(Path(sys.executable).parent / "medvault"), "compress", "--keep", "0"],
                                       env=peers.env, cwd=ROOT, stdout=subprocess.DEVNULL)
                      for _ in range(args.compress_processes)]
            for proc in drains:
                proc.wait()
            seconds = time.perf_counter() - start
            per_instance = seconds / (3 * args.instances)
            result["compress_drain_per_s_MedVault"] = round(3 * args.instances / seconds, 1)
            print(f"deferred compression of {3 * args.instances} instances: {seconds:.1f} s", file=sys.stderr)
            for key in [k for k in result if k.endswith("_per_s_MedVault") and not k.startswith("compress")]:
                sustained = 1 / (1 / result[key] + per_instance)
                result[key.replace("_per_s_", "_sustained_per_s_")] = round(sustained, 1)
        mv_bytes = dir_bytes(work / "medvault" / "blobs")
        or_bytes = dir_bytes(work / "orthanc" / "db", skip_suffixes=("index", "index-wal", "index-shm"))
        result["disk_ratio_MedVault"] = round(mv_bytes / stored_input, 3)
        result["disk_ratio_Orthanc"] = round(or_bytes / stored_input, 3)
        print(f"disk: MedVault {mv_bytes / stored_input:.3f}x, Orthanc {or_bytes / stored_input:.3f}x", file=sys.stderr)

        if not args.inline:
            # Measured, not estimated: STOW-RS with 4 clients while `medvault worker` (one
            # process per core) compresses alongside, until the last instance is compressed.
            files = reuid(base, "SUSTAINED-MedVault")
            acked, total = stow_with_worker(mv, files, peers, work, args.compress_processes)
            result["stow_4_client_with_worker_acked_per_s_MedVault"] = round(acked, 1)
            result["stow_4_client_with_worker_compressed_per_s_MedVault"] = round(total, 1)
            print(f"STOW-RS 4 clients with the worker compressing: acknowledged {acked:.1f}/s, "
                  f"all compressed {total:.1f}/s", file=sys.stderr)

        # WADO-RS of one whole series (the C-STORE copy) from each.
        for name, root, auth in (("MedVault", f"{peers.mv}/dicomweb", peers.mv_auth),
                                 ("Orthanc", f"{peers.orthanc}/dicom-web", None)):
            found = requests.get(f"{root}/studies", params={"PatientID": f"CSTORE-{name}"}, auth=auth,
                                 headers={"Accept": "application/dicom+json"}, timeout=60).json()
            study = found[0]["0020000D"]["Value"][0]
            for label, accept in (
                ("stored", 'multipart/related; type="application/dicom"; transfer-syntax=*'),
                ("explicit_le", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'),
            ):
                seconds, count = wado_series_seconds(f"{root}/studies/{study}", auth, accept)
                if count != args.instances:
                    raise RuntimeError(f"{name} WADO-RS returned {count} instances")
                result[f"wado_series_s_{label}_{name}"] = round(seconds, 3)
                print(f"WADO-RS series {label} {name}: {seconds:.2f} s", file=sys.stderr)

        # Fill both archives, then QIDO by PatientID.
        if args.fill:
            print(f"filling both archives with {args.fill} studies ...", file=sys.stderr)
            fill = fill_instances(args.fill)
            batches = [fill[i:i + 50] for i in range(0, len(fill), 50)]
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(mv.stow, batches))
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(orth.stow, batches))
            rng = np.random.default_rng(3)
            pids = [f"FILL-{i:06d}" for i in rng.integers(0, args.fill, size=200)]
            for name, url, auth in (("MedVault", mv.qido_url, peers.mv_auth), ("Orthanc", orth.qido_url, None)):
                qido_latency(url, auth, pids[:10])  # warm
                lat = qido_latency(url, auth, pids)
                result[f"qido_p50_ms_{name}"] = round(lat["p50_ms"], 2)
                result[f"qido_p95_ms_{name}"] = round(lat["p95_ms"], 2)
                print(f"QIDO {name} at {args.fill + 3 * args.instances} instances: {lat}", file=sys.stderr)
            result["index_instances"] = args.fill + 3 * args.instances
            result["index_studies"] = args.fill + 3
    ratios = {}
    for key, value in list(result.items()):
        if key.endswith("_MedVault"):
            # Sustained MedVault rates compare with Orthanc's plain ones (it does not compress).
            other = result.get(key.replace("_sustained", "")[: -len("MedVault")] + "Orthanc")
            if other and not isinstance(value, str):
                ratios[key[: -len("_MedVault")]] = round(value / other, 2)
    result["ratios_medvault_over_orthanc"] = ratios
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--fill", type=int, default=10000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--inline", action="store_true", help="compress inside ingest (not deferred)")
    parser.add_argument("--compress-processes", type=int, default=os.cpu_count() or 1,
                        help="medvault compress processes run side by side (default: one per core)")
    parser.add_argument("--codec", default="", help="MEDVAULT_COMPRESSION for MedVault (default jpegls)")
    args = parser.parse_args()
    reexec_in_private_network()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
