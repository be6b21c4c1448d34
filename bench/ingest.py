"""Ingest and codec benchmark on a realistic CT series generated from a real CT template.

    .venv/bin/python bench/ingest.py [--instances 500] [--variants none,jpegls,htj2k,jpegls@2] [--profile]

* Template: the 512x512 16-bit Enhanced CT sample (../shared/data/dicom/multiframe/
  eCT_Supplemental.dcm, NEMA CT0012) for the pixels, written as classic CT Image Storage
  instances with the header of the CT_small sample. Every instance gets new UIDs, its
  slice shifted by a few pixels and Gaussian noise (sigma 8 inside the body, clipped
  half-normal sigma 3 in air), so no two instances share pixels and compression is not
  flattered.
* Codec table: ratio, single-core encode and decode MB per CPU-second for every candidate on
  32 generated CT instances and on the MR samples (MR2_UNCR 1024x1024, PROSTATE-MRI).
* Ingest: ``instance_store`` over all generated instances, once per MEDVAULT_COMPRESSION
  variant, each in a child process pinned to one CPU core with its own SQLite database and
  blob directory (fsync on), timing only the ingest loop. "none" is the baseline. Both wall
  time and the process's CPU time are reported: on a shared machine wall time includes
  waiting for other processes, while instances per CPU-second is what a dedicated core does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data" / "dicom"


def pin_to_one_core() -> None:
    """Run this process on one CPU only, so that per-CPU-second rates mean one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def generate_series(count: int, seed: int = 0) -> list[bytes]:
    import pydicom
    from pydicom.uid import generate_uid

    from medvault.core.dicom.parse import dataset_to_part10

    ect = pydicom.dcmread(SHARED / "multiframe/eCT_Supplemental.dcm")
    frames = ect.pixel_array.astype(np.int32)  # (2, 512, 512), stored value = HU + 1024
    header = pydicom.dcmread(SHARED / "single_ct/CT_small.dcm")
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    out = []
    for index in range(count):
        base = frames[index % 2]
        dx, dy = rng.integers(-6, 7, size=2)
        shifted = np.roll(np.roll(base, dx, axis=1), dy, axis=0)
        body = shifted > 0
        noise = np.where(
            body,
            rng.normal(0.0, 8.0, shifted.shape),
            np.abs(rng.normal(0.0, 3.0, shifted.shape)),
        )
        pixels = np.clip(shifted + np.round(noise), 0, 4095).astype(np.uint16)
        ds = header.copy()
        ds.file_meta = header.file_meta.copy()
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        ds.SliceLocation = float(index)
        out.append(dataset_to_part10(ds))
    return out


def codec_table(ct: list[bytes]) -> list[dict]:
    from io import BytesIO

    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate

    from medvault.core.codecs import CODECS, decode_pixels, encode_frames
    from medvault.core.codecs.lossless import _with_pixels

    sets = {
        "CT (generated, 512x512)": [pydicom.dcmread(BytesIO(b)) for b in ct],
        "MR (MR2_UNCR 1024x1024 + PROSTATE-MRI 176x176)": [
            pydicom.dcmread(SHARED / "single_mr/MR2_UNCR.dcm"),
            pydicom.dcmread(SHARED / "tcia/PROSTATE-MRI_MR.dcm"),
        ],
    }
    pin_to_one_core()
    rows = []
    for set_name, datasets in sets.items():
        arrays = [ds.pixel_array.reshape((1, ds.Rows, ds.Columns)) for ds in datasets]
        raw = sum(a.nbytes for a in arrays)
        for codec in [*CODECS, "zlib-6", "rle"]:
            # CPU time of this process (pinned to one core): the machine is shared, so wall
            # time would measure the neighbours.
            start = time.process_time()
            encoded: list[list[bytes]] = []
            for ds, array in zip(datasets, arrays, strict=True):
                if codec == "zlib-6":
                    encoded.append([zlib.compress(array.tobytes(), 6)])
                elif codec == "rle":
                    from pydicom.pixels.encoders import RLELosslessEncoder

                    encoded.append([RLELosslessEncoder.encode(array[0], encoding_plugin="pydicom", **_kw(ds))])
                else:
                    encoded.append(encode_frames(codec, array, ds))
            enc_s = time.process_time() - start
            size = sum(len(f) for frames in encoded for f in frames)
            start = time.process_time()
            exact = True
            for ds, array, frames in zip(datasets, arrays, encoded, strict=True):
                if codec == "zlib-6":
                    back = np.frombuffer(zlib.decompress(frames[0]), dtype=array.dtype).reshape(array.shape)
                elif codec == "rle":
                    new = _with_pixels(ds, "1.2.840.10008.1.2.5", ("OB", encapsulate(frames)))
                    back = decode_pixels(new)
                else:
                    new = _with_pixels(ds, CODECS[codec].transfer_syntax_uid, ("OB", encapsulate(frames)))
                    back = decode_pixels(new)
                exact &= bool(np.array_equal(back.reshape(array.shape), array))
            dec_s = time.process_time() - start
            rows.append(
                {
                    "set": set_name,
                    "codec": codec,
                    "ratio": round(raw / size, 2),
                    "encode_MBps": round(raw / enc_s / 1e6, 1),
                    "decode_MBps": round(raw / dec_s / 1e6, 1),
                    "bit_exact": exact,
                }
            )
    del imagecodecs
    return rows


def _kw(ds) -> dict:
    return {
        "rows": ds.Rows, "columns": ds.Columns, "samples_per_pixel": 1,
        "bits_allocated": ds.BitsAllocated, "bits_stored": ds.BitsStored,
        "pixel_representation": ds.PixelRepresentation,
        "photometric_interpretation": ds.PhotometricInterpretation, "number_of_frames": 1,
    }


def ingest_worker(folder: Path, profile: bool) -> dict:
    """Run in a child process: migrate a fresh database, then time instance_store."""
    pin_to_one_core()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from medvault.archive.ingest import instance_store

    files = sorted(folder.iterdir())
    payloads = [f.read_bytes() for f in files]
    statuses: dict[str, int] = {}
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    start = time.perf_counter()
    cpu_start = time.process_time()
    stored = 0
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    if threads == 1:
        results = (instance_store(data=data, source="bench") for data in payloads)
    else:
        # As `medvault ingest --jobs N`: threads overlap one file's fsync with the next
        # file's decoding; still one core.
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=threads)
        results = pool.map(lambda data: instance_store(data=data, source="bench"), payloads)
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
        if result.instance is not None:
            stored += result.instance.stored_bytes
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats(os.environ.get("BENCH_SORT", "cumulative"))
        stats.print_stats(int(os.environ.get("BENCH_TOP", "25")))
    received = sum(len(p) for p in payloads)
    return {
        "instances": len(payloads),
        "statuses": statuses,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "instances_per_s": round(len(payloads) / elapsed, 1),
        "MB_per_s": round(received / elapsed / 1e6, 1),
        # Throughput per CPU-second of this process: what one dedicated core would reach
        # (the shared benchmark machine is busy, so wall time overstates the cost).
        "instances_per_cpu_s": round(len(payloads) / cpu, 1),
        "MB_per_cpu_s": round(received / cpu / 1e6, 1),
        "received_bytes": received,
        "stored_bytes": stored,
        "ratio_received_to_stored": round(received / stored, 2) if stored else None,
    }


def run_variant(folder: Path, variant: str, workdir: Path, profile: bool) -> dict:
    """``variant`` is a MEDVAULT_COMPRESSION value, optionally ``@threads`` (e.g. jpegls@2)."""
    codec, _, threads = variant.partition("@")
    data_dir = workdir / f"data-{codec}-{threads or 1}"
    env = dict(os.environ)
    env.update(
        {
            "MEDVAULT_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'bench.sqlite3'}",
            "MEDVAULT_BLOB_DIR": str(data_dir / "blobs"),
            "MEDVAULT_COMPRESSION": codec,
            "BENCH_THREADS": threads or "1",
            "MEDVAULT_AUTO_ANALYSE": "false",
            "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src"),
        }
    )
    args = [sys.executable, __file__, "--worker", str(folder)] + (["--profile"] if profile else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr}")
    if profile:
        sys.stderr.write(f"--- profile: {variant} ---\n{done.stderr}\n")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["variant"] = variant
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--variants", default="none,jpegls,htj2k,jpegls@2")
    parser.add_argument("--codec-instances", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="cProfile the ingest loop (stderr)")
    parser.add_argument("--skip-codecs", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(ingest_worker(args.worker, args.profile)))
        return
    if not SHARED.is_dir():
        raise SystemExit(f"real data not found at {SHARED}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medvault.web.settings")
    with tempfile.TemporaryDirectory(prefix="mv-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("MEDVAULT_DATA_DIR", str(workdir / "outer"))
        start = time.perf_counter()
        series = generate_series(args.instances)
        gen_s = time.perf_counter() - start
        folder = workdir / "series"
        folder.mkdir()
        for index, data in enumerate(series):
            (folder / f"{index:05d}.dcm").write_bytes(data)
        report: dict = {
            "machine": machine(),
            "instances": args.instances,
            "instance_bytes": len(series[0]),
            "generation_s": round(gen_s, 1),
        }
        if not args.skip_codecs:
            report["codecs"] = codec_table(series[: args.codec_instances])
        report["ingest"] = [
            run_variant(folder, variant, workdir, args.profile) for variant in args.variants.split(",")
        ]
        base = next((r for r in report["ingest"] if r["variant"] == "none"), None)
        if base:
            for row in report["ingest"]:
                row["speed_vs_none"] = round(row["instances_per_s"] / base["instances_per_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
