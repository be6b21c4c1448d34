"""Disk bytes / input bytes, MedVault against Orthanc, on the same series in one run.

    .venv/bin/python bench/disk_ratio_vs_orthanc.py [--instances 500] [--j2k-runs 4]
        [--j2k-serial-runs 2] [--jpegxl-efforts 3,5,7,9] [--no-real] [--json out.json]

One job: what each system keeps on disk for the same input, and at what rate it gets there.
The input is the archive benchmark's generated CT series (``bench/ingest.py``
``generate_series(n, seed=5)``: 512x512 16-bit, noise sigma 8 per slice, unchanged here),
written once and sent byte for byte identical to every configuration below; plus, unless
``--no-real``, the real CT in ../shared/data/dicom (read in place, never copied).

Orthanc (Debian 1.10, started by ``tests/peers/orthanc_env.py`` ``Peers``, each configuration
on a fresh storage directory; REST ``POST /instances`` from ``--clients`` threads, one
instance per request; the rate includes Orthanc's own compression, which is inline):
* plain: stores what it receives;
* zlib: ``"StorageCompression": true``;
* j2k: ``"IngestTranscoding": "1.2.840.10008.1.2.4.90"`` (JPEG 2000 lossless) with the
  GDCM plugin (``apt-get install orthanc-gdcm``), repeated ``--j2k-runs`` times (and
  ``--j2k-serial-runs`` more with one client) because the plugin has been seen to crash; a crash is recorded
  (exit status, instances acknowledged
  before it, the log's tail), Orthanc is restarted on the same storage and the instances it
  did not acknowledge are sent again;
* jpegls: ``"IngestTranscoding": "1.2.840.10008.1.2.4.80"`` (JPEG-LS lossless, Orthanc's
  built-in DCMTK codec, no plugin).
Every instance Orthanc stored is fetched back (``/instances/{id}/file``), its transfer syntax
counted and its decoded pixels compared with the input's.

MedVault: the series is ingested once with deferred compression (``medvault ingest
--defer-compression``: stored as received, a compression task queued per instance); for
each codec a copy of that archive is compressed by ``--compress-processes`` ``medvault
compress --keep 0`` processes side by side (the drain rate) with ``MEDVAULT_COMPRESSION``
(and ``MEDVAULT_JPEGXL_EFFORT``) set; every stored blob is then read from disk, its transfer
syntax counted and its pixels compared with the input's.

Also reported: the entropy of the generator's noise, a floor no lossless coder can go below
on the generated series (``noise_floor``).

Disk bytes: Orthanc's storage directory without its SQLite index; MedVault's blob directory
without its SQLite database. Runs inside a private network namespace like
bench/versus_orthanc.py (``unshare --net``, loopback up). Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import sqlite3
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dicom"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import generate_series  # noqa: E402
from peers.orthanc_env import GDCM_PLUGIN, Peers, reexec_in_private_network  # noqa: E402
from versus_orthanc import dir_bytes  # noqa: E402

import medvault.core.codecs.lossless  # noqa: E402,F401  (registers pydicom's JPEG-XL decoder)

BIN = Path(sys.executable).parent
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
ORTHANC_CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "zlib": {"orthanc_compression": True},
    "j2k": {"orthanc_ingest_transcoding": J2K_LOSSLESS, "orthanc_gdcm": True},
    "jpegls": {"orthanc_ingest_transcoding": JPEGLS_LOSSLESS},
}


def pixels_of(data: bytes) -> tuple[str, np.ndarray]:
    ds = pydicom.dcmread(io.BytesIO(data))
    return str(ds.SOPInstanceUID), np.asarray(ds.pixel_array)


class Checker:
    """The input's pixels by SOP Instance UID; counts what a stored file holds."""

    def __init__(self, files: list[bytes]) -> None:
        self.expected = dict(pixels_of(f) for f in files)

    def check(self, stored: list[bytes]) -> dict[str, Any]:
        syntaxes: dict[str, int] = {}
        exact = differ = 0
        seen = set()
        for data in stored:
            ds = pydicom.dcmread(io.BytesIO(data))
            ts = str(ds.file_meta.TransferSyntaxUID)
            syntaxes[ts] = syntaxes.get(ts, 0) + 1
            uid = str(ds.SOPInstanceUID)
            seen.add(uid)
            if np.array_equal(np.asarray(ds.pixel_array), self.expected[uid]):
                exact += 1
            else:
                differ += 1
        return {"checked": len(stored), "bit_exact": exact, "differ": differ,
                "missing": len(set(self.expected) - seen), "transfer_syntaxes": syntaxes}


# --- Orthanc -----------------------------------------------------------------------------

def orthanc_post_all(peers: Peers, files: list[bytes], clients: int) -> tuple[float, list[int]]:
    """POST every file; (seconds, indexes not acknowledged with 200)."""
    local = threading.local()

    def post(i: int) -> tuple[int, bool]:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        try:
            r = local.s.post(f"{peers.orthanc}/instances", data=files[i], timeout=300,
                             headers={"Content-Type": "application/dicom"})
            return i, r.status_code == 200
        except requests.RequestException:
            return i, False

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        failed = [i for i, ok in pool.map(post, range(len(files))) if not ok]
    return time.perf_counter() - start, failed


def _crash_record(peers: Peers, proc: subprocess.Popen[bytes], work: Path, crashes: list[dict[str, Any]],
                  acknowledged: int, phase: str) -> None:
    """Note how Orthanc stopped, keep its log, and drop the dead process."""
    log = work / f"orthanc.crash{len(crashes) + 1}.log"
    (work / "orthanc.log").rename(log)
    tail = log.read_text(errors="replace").strip().splitlines()[-6:]
    code = proc.returncode
    crashes.append({"exit": code, "signal": signal.Signals(-code).name if code < 0 else None,
                    "phase": phase, "acknowledged_before": acknowledged, "log_tail": tail})
    print(f"  Orthanc stopped ({code}) during {phase}, {acknowledged} instances acknowledged", file=sys.stderr)
    peers.procs.remove(proc)


def run_orthanc(name: str, files: list[bytes], checker: Checker, work: Path, clients: int,
                max_restarts: int = 5) -> dict[str, Any]:
    input_bytes = sum(len(f) for f in files)
    peers = Peers(work, **ORTHANC_CONFIGS[name])
    crashes: list[dict[str, Any]] = []
    seconds = 0.0
    try:
        peers.start_orthanc()
        todo = list(range(len(files)))
        while todo:
            proc = peers.procs[-1]
            spent, failed_local = orthanc_post_all(peers, [files[i] for i in todo], clients)
            seconds += spent
            failed = [todo[i] for i in failed_local]
            if not failed:
                break
            time.sleep(1.0)
            if proc.poll() is None:
                raise RuntimeError(f"Orthanc ({name}) refused {len(failed)} instances without crashing; "
                                   f"see {work / 'orthanc.log'}")
            _crash_record(peers, proc, work, crashes, len(files) - len(failed), "ingest")
            if len(crashes) > max_restarts:
                break
            peers.start_orthanc()
            todo = failed
        # Read back what was stored; a crash after the last acknowledgement counts too.
        for _ in range(max_restarts + 1):
            proc = peers.procs[-1]
            try:
                time.sleep(1.0)
                stats = peers.orthanc_call("GET", "/statistics")
                ids = peers.orthanc_call("GET", "/instances")
                stored = [peers.orthanc_call("GET", f"/instances/{i}/file") for i in ids]
                break
            except requests.RequestException:
                time.sleep(1.0)
                if proc.poll() is None:
                    raise
                _crash_record(peers, proc, work, crashes, len(files), "read-back")
                peers.start_orthanc()
        else:
            raise RuntimeError(f"Orthanc ({name}) kept stopping while its instances were read back")
    finally:
        peers.stop()
    disk = dir_bytes(work / "orthanc" / "db", skip_suffixes=("index", "index-wal", "index-shm", "index-journal"))
    return {
        "system": "Orthanc", "config": name, "instances": len(files), "input_bytes": input_bytes,
        "disk_bytes": disk, "disk_ratio": round(disk / input_bytes, 4),
        "statistics_disk_bytes": int(stats.get("TotalDiskSize", 0)),
        "ingest_per_s": round(len(files) / seconds, 1), "clients": clients,
        "crashes": crashes, "verify": checker.check(stored),
    }


# --- MedVault ----------------------------------------------------------------------------

def medvault_template(work: Path, paths: list[Path]) -> tuple[Path, float]:
    """A fresh archive holding ``paths`` as received, one compression task per instance."""
    peers = Peers(work)
    peers.setup_medvault()
    start = time.perf_counter()
    with open(work / "ingest.log", "wb") as log:
        done = subprocess.run([str(BIN / "medvault"), "ingest", "--defer-compression", *map(str, paths)],
                              env=peers.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    if done.returncode != 0:
        raise RuntimeError("medvault ingest failed: " + (work / "ingest.log").read_text()[-500:])
    return work / "medvault", time.perf_counter() - start


def run_medvault(codec: str, effort: int | None, template: Path, files_count: int, input_bytes: int,
                 checker: Checker, work: Path, processes: int) -> dict[str, Any]:
    shutil.copytree(template, work / "medvault")
    env_extra = {"MEDVAULT_COMPRESSION": codec, "MEDVAULT_COMPRESSION_DEFERRED": "true"}
    if effort is not None:
        env_extra["MEDVAULT_JPEGXL_EFFORT"] = str(effort)
    peers = Peers(work, medvault_env=env_extra)
    blobs = work / "medvault" / "blobs"
    before = dir_bytes(blobs)
    start = time.perf_counter()
    drains = [subprocess.Popen([str(BIN / "medvault"), "compress", "--keep", "0"], env=peers.env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(processes)]
    for proc in drains:
        proc.wait()
    seconds = time.perf_counter() - start
    db = sqlite3.connect(str(work / "medvault" / "medvault.sqlite3"))
    left = db.execute("SELECT COUNT(*) FROM archive_compressiontask").fetchone()[0]
    errors = [r[0] for r in db.execute("SELECT DISTINCT error FROM archive_compressiontask WHERE error != ''")]
    db.close()
    disk = dir_bytes(blobs)
    stored = [p.read_bytes() for p in blobs.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    return {
        "system": "MedVault", "config": codec if effort is None else f"{codec} e{effort}",
        "instances": files_count, "input_bytes": input_bytes,
        "disk_bytes_before": before, "disk_bytes": disk, "disk_ratio": round(disk / input_bytes, 4),
        "drain_per_s": round(files_count / seconds, 1), "drain_processes": processes,
        "tasks_left": left, "task_errors": errors[:3], "verify": checker.check(stored),
    }


# --- the floor set by the generator's noise ---------------------------------------------

def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def noise_floor(files: list[bytes]) -> dict[str, float]:
    """Bits per pixel that no lossless coder can beat on the generated series.

    ``generate_series`` adds independent noise to every pixel: round(N(0, 8)) inside the body
    (template value > 0), round(|N(0, 3)|) in air, then clips to 0..4095. Even a coder that
    knew the template slices and every shift exactly would need the entropy of that noise,
    pixel by pixel (clipping near 0 included); a real coder also pays for the anatomy.
    """
    from math import erf, sqrt

    from ingest import SHARED as template_dir

    def cdf(x: np.ndarray, sigma: float) -> np.ndarray:
        return 0.5 * (1 + np.vectorize(erf)(x / (sigma * sqrt(2))))

    k = np.arange(-80, 81)
    body_pmf = cdf(k + 0.5, 8.0) - cdf(k - 0.5, 8.0)  # round(N(0, 8))
    a = np.arange(0, 40)
    air_pmf = np.where(a == 0, cdf(np.array(0.5), 3.0) - 0.5, cdf(a + 0.5, 3.0) - cdf(a - 0.5, 3.0)) * 2
    frames = pydicom.dcmread(template_dir / "multiframe/eCT_Supplemental.dcm").pixel_array.astype(np.int64)
    bits = []
    for frame in frames:
        values, counts = np.unique(frame[frame > 0], return_counts=True)
        h_body = 0.0
        for v, c in zip(values, counts, strict=True):
            out = np.clip(v + k, 0, 4095)  # clipping merges outcomes near 0 and 4095
            merged = np.bincount(out - out.min(), weights=body_pmf)
            h_body += c * _entropy_bits(merged)
        air = frame.size - counts.sum()
        bits.append((h_body + air * _entropy_bits(air_pmf)) / frame.size)
    per_pixel = float(np.mean(bits))  # instances alternate between the two slices
    pixel_bytes = 512 * 512 * 2
    header = sum(len(f) for f in files) / len(files) - pixel_bytes
    return {"bits_per_pixel": round(per_pixel, 3), "pixel_ratio": round(per_pixel / 16, 4),
            "file_ratio": round((per_pixel / 8 * 512 * 512 + header) / (pixel_bytes + header), 4),
            "header_bytes_per_instance": round(header)}


# --- data --------------------------------------------------------------------------------

def real_sets() -> dict[str, list[Path]]:
    """The real CT in ../shared/data/dicom, by series (inventory.csv)."""
    rows = list(csv.DictReader((SHARED / "inventory.csv").open()))
    ct = [r for r in rows if r["modality"] == "CT" and not r["path"].startswith("invalid/")]
    sets = {
        "real eCT_Supplemental (1 enhanced CT, 2 frames 512x512)":
            [SHARED / r["path"] for r in ct if r["path"].startswith("multiframe/")],
        "real DICOMDIR CT (3 series, 11 slices 16x16)":
            [SHARED / r["path"] for r in ct if r["path"].startswith("series_dicomdir/")],
    }
    return {k: v for k, v in sets.items() if v and all(p.exists() for p in v)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mv-disk-vs-orthanc-"))
    results: list[dict[str, Any]] = []
    floor: dict[str, float] = {}
    try:
        print(f"generating {args.instances} CT instances ...", file=sys.stderr)
        generated = generate_series(args.instances, seed=5)
        folder = work / "input"
        folder.mkdir()
        for i, data in enumerate(generated):
            (folder / f"{i:05d}.dcm").write_bytes(data)
        sets: dict[str, list[Path]] = {f"generated CT ({args.instances} x 512x512, noise sigma 8)":
                                       sorted(folder.iterdir())}
        if not args.no_real:
            sets.update(real_sets())
        efforts = [int(e) for e in args.jpegxl_efforts.split(",") if e]
        variants: list[tuple[str, int | None]] = [("jpegls", None), ("jpeg2000", None), ("htj2k", None),
                                                  *[("jpegxl", e) for e in efforts]]
        for set_index, (set_name, paths) in enumerate(sets.items()):
            files = [p.read_bytes() for p in paths]
            input_bytes = sum(len(f) for f in files)
            checker = Checker(files)
            if set_index == 0:
                floor = noise_floor(files)
                print(f"  noise floor: {floor}", file=sys.stderr)
            print(f"{set_name}: {len(files)} files, {input_bytes} bytes", file=sys.stderr)
            for name in ORTHANC_CONFIGS:
                if name == "j2k" and not GDCM_PLUGIN.exists():
                    print("  Orthanc j2k skipped: orthanc-gdcm is not installed", file=sys.stderr)
                    continue
                runs = [args.clients]
                if name == "j2k" and set_index == 0:
                    # Repeated, and also with one client: does the crash need concurrency?
                    runs = [args.clients] * args.j2k_runs + [1] * args.j2k_serial_runs
                for repeat, clients in enumerate(runs):
                    sub = work / f"orthanc-{set_index}-{name}-{repeat}"
                    r = run_orthanc(name, files, checker, sub, clients)
                    r.update(set=set_name, run=repeat + 1)
                    results.append(r)
                    print(f"  Orthanc {name} run {repeat + 1}: disk {r['disk_ratio']:.4f}x, "
                          f"{r['ingest_per_s']}/s, crashes {len(r['crashes'])}, verify {r['verify']}",
                          file=sys.stderr)
                    shutil.rmtree(sub, ignore_errors=True)
            template, ingest_s = medvault_template(work / f"mv-template-{set_index}", paths)
            for codec, effort in variants:
                sub = work / f"mv-{set_index}-{codec}-{effort}"
                r = run_medvault(codec, effort, template, len(files), input_bytes, checker, sub,
                                 args.compress_processes)
                r.update(set=set_name, ingest_deferred_per_s=round(len(files) / ingest_s, 1))
                results.append(r)
                print(f"  MedVault {r['config']}: disk {r['disk_ratio']:.4f}x "
                      f"(before {r['disk_bytes_before'] / input_bytes:.4f}x), drain {r['drain_per_s']}/s, "
                      f"tasks left {r['tasks_left']}, verify {r['verify']}", file=sys.stderr)
                shutil.rmtree(sub, ignore_errors=True)
            shutil.rmtree(template.parent, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"instances": args.instances, "clients": args.clients, "compress_processes": args.compress_processes,
            "noise_floor": floor, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--j2k-runs", type=int, default=4, help="Orthanc JPEG 2000 runs (crash frequency)")
    parser.add_argument("--j2k-serial-runs", type=int, default=2, help="... and with one client")
    parser.add_argument("--clients", type=int, default=4, help="Orthanc REST clients in parallel")
    parser.add_argument("--jpegxl-efforts", default="3,5,7,9", help="MEDVAULT_JPEGXL_EFFORT values to run")
    parser.add_argument("--compress-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-real", action="store_true", help="only the generated series")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reexec_in_private_network()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
