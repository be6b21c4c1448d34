"""WADO-RS of a series stored JPEG-LS, asked for in Explicit VR Little Endian (the
``wado_series_s_explicit_le`` request of bench/versus_orthanc.py), in-process.

Run:

    PYTHONPATH=$PWD/src .venv/bin/python bench/wado_decompress.py [--instances 100] [--repeat 5]
        [--threads N] [--profile] [--codec jpegls|htj2k]

On a throw-away installation (SQLite + blob store in a temp dir, compression inline) a
512x512 16-bit CT series (bench/ctseries.py, from real CT) is stored through STOW-RS, then
``GET /dicomweb/studies/{study}`` with the bench's Accept header is timed through Django's full
request stack, the body read to the end. ``--threads`` sets the decoding threads of the fast
path (default: the view's); ``--profile`` prints a cProfile of one more request. To compare
with an older tree, run the same command with PYTHONPATH pointing at that tree's src.
Prints one JSON object: best and median wall time, CPU time of the process (all threads).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from throwaway import bench_clinician, throwaway_installation  # noqa: E402

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--codec", default="jpegls", help="stored codec (MEDVAULT_COMPRESSION): jpegls, htj2k, ...")
    args = parser.parse_args()
    tmp = throwaway_installation("mv-bench-wado-", MEDVAULT_COMPRESSION_DEFERRED="0",
                                 MEDVAULT_COMPRESSION=args.codec)
    from ctseries import ct_series_512
    from django.test import Client

    from medvault.accounts.tokens import token_create
    from medvault.archive.models import Instance
    from medvault.core.dicom.multipart import boundary_new, multipart_build, multipart_content_type, multipart_parse
    from medvault.dicomweb.views import wado

    if args.threads and hasattr(wado, "DECODE_THREADS"):
        setattr(wado, "DECODE_THREADS", args.threads)  # noqa: B010 (absent on older trees)
        setattr(wado, "DECODE_AHEAD", 2 * args.threads)  # noqa: B010
    user, _group = bench_clinician()
    _, key = token_create(user=user, name="bench")
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    study, files = ct_series_512(args.instances)
    client = Client()
    for start in range(0, len(files), 50):
        boundary = boundary_new()
        body = b"".join(multipart_build([(f, "application/dicom") for f in files[start:start + 50]], boundary))
        response = client.post("/dicomweb/studies", data=body,
                               content_type=multipart_content_type(boundary, "application/dicom"), **headers)
        assert response.status_code == 200, response.content[:500]
    syntaxes = sorted(set(Instance.objects.values_list("transfer_syntax_uid", flat=True)))

    def get() -> int:
        response = client.get(f"/dicomweb/studies/{study}", HTTP_ACCEPT=ACCEPT, **headers)
        assert response.status_code == 200
        body = b"".join(response.streaming_content)
        return len(multipart_parse(body, response["Content-Type"]))

    assert get() == args.instances  # warm-up
    wall, cpu = [], []
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        get()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        get()
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    print(json.dumps({
        "instances": args.instances,
        "stored_syntaxes": syntaxes,
        "decode_threads": getattr(wado, "DECODE_THREADS", 1),
        "wall_s_best": round(min(wall), 3),
        "wall_s_median": round(statistics.median(wall), 3),
        "cpu_s_best": round(min(cpu), 3),
    }, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
