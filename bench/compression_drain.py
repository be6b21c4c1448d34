"""Per-instance cost of the deferred compression worker, in process.

Stores ``--count`` 512x512 CT slices (bench/ctseries.py) with deferred compression into a
fresh database and blob directory, then times ``compression_drain`` (optionally under
cProfile). Prints one JSON line: instances, seconds, ms per instance, instances per second.

    PYTHONPATH=src .venv/bin/python bench/compression_drain.py --count 60 [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--codec", default="jpegls")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--serial", action="store_true",
                        help="batches in this thread only (no pipeline), so that cProfile sees every call")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (robust on a busy machine)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mv-drain-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'db.sqlite3'}")
    os.environ.update({
        "MEDVAULT_DATA_DIR": str(work), "MEDVAULT_BLOB_DIR": str(work / "blobs"),
        "MEDVAULT_COMPRESSION": args.codec, "MEDVAULT_COMPRESSION_DEFERRED": "true",
        "MEDVAULT_AUTO_ANALYSE": "false", "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
    })
    import django

    django.setup()
    from ctseries import ct_series_512
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from medvault.archive.compression import compression_drain, compression_pending
    from medvault.archive.ingest import instance_store

    _, payloads = ct_series_512(args.count)
    for data in payloads:
        instance_store(data=data, source="bench", defer_compression=True)
    assert compression_pending() == args.count
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    if args.serial:
        from medvault.archive import compression

        stats = compression.CompressionStats()
        while tasks := compression.TASKS.claim_many(worker_id="bench", count=compression.DRAIN_BATCH):
            for outcome, before, after in compression.compression_run_many(tasks):
                stats.compressed += outcome is compression.CompressionOutcome.COMPRESSED
                stats.failed += outcome is compression.CompressionOutcome.FAILED
                stats.bytes_before += before
                stats.bytes_after += after
    else:
        stats = compression_drain(keep_seconds=3600)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.top)
    print(json.dumps({
        "instances": args.count, "compressed": stats.compressed, "failed": stats.failed,
        "seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3),
        "ms_per_instance": round(1000 * elapsed / args.count, 1),
        "cpu_ms_per_instance": round(1000 * cpu / args.count, 1),
        "instances_per_s": round(args.count / elapsed, 1),
        "ratio": round(stats.bytes_before / stats.bytes_after, 2) if stats.bytes_after else None,
    }))


if __name__ == "__main__":
    main()
