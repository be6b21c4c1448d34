"""Viewer frame latency: a 512x512 CT frame, windowed and PNG-encoded by the server.

Run (real CT from ../shared/data):

    .venv/bin/python bench/viewer_render.py [--requests 50]

In one run, on a throw-away installation (SQLite file + blob store in a temp dir):

1. stores ``dicom/multiframe/eCT_Supplemental.dcm`` (512x512, 16-bit CT, 2 frames) through
   the archive's ingest service (it is compressed losslessly, as every stored image);
2. a logged-in clinician asks ``/frames/<uid>/<frame>.png`` through Django's full request
   stack (middleware, session, permission check, audit), measuring:
   * ``cold``: the first request for a frame (blob read + decode + window + PNG);
   * ``warm_new_window``: a window not seen before on a frame already decoded (the case of
     dragging window/level or choosing a preset) — the figure the < 200 ms target is about;
   * ``warm_repeat``: a window already rendered (PNG cache hit);
   * baseline ``uncached``: the same new-window request with the decoded-frame cache cleared
     before each request (what every request would cost without the cache).

Prints one JSON object with p50/p95/max in milliseconds and the ratio uncached/warm.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = SHARED / "dicom" / "multiframe" / "eCT_Supplemental.dcm"
sys.path.insert(0, str(ROOT / "bench"))

from latency import summary  # noqa: E402
from throwaway import bench_clinician, throwaway_installation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if not SAMPLE.is_file():
        raise SystemExit(f"real data not found at {SAMPLE}")
    tmp = throwaway_installation("mv-bench-viewer-")
    from django.test import Client

    from medvault.archive.services import upload_store
    from medvault.ui import rendering

    user, group = bench_clinician()
    [result] = upload_store(name=SAMPLE.name, data=SAMPLE.read_bytes(), source="bench", user=user, group=group)
    assert result.status == "stored", result.reason
    instance = result.instance
    client = Client()
    client.force_login(user)
    base = f"/frames/{instance.sop_instance_uid}"

    def timed(path: str, params: dict | None = None) -> float:
        started = time.perf_counter()
        response = client.get(path, params or {})
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG", response.status_code
        return elapsed

    cold = [timed(f"{base}/0.png"), timed(f"{base}/1.png")]
    warm_new, warm_repeat, uncached = [], [], []
    for i in range(args.requests):
        params = {"wc": 40 + i, "ww": 400 + 3 * i}
        warm_new.append(timed(f"{base}/{i % 2}.png", params))
        warm_repeat.append(timed(f"{base}/{i % 2}.png", params))
    for i in range(max(10, args.requests // 5)):
        rendering.FRAME_CACHE.clear()
        rendering.PNG_CACHE.clear()
        uncached.append(timed(f"{base}/{i % 2}.png", {"wc": -600 - i, "ww": 1500}))
    out = {
        "image": f"{SAMPLE.relative_to(SHARED)} ({instance.rows}x{instance.columns}, "
                 f"{instance.number_of_frames} frames, stored as {instance.transfer_syntax_uid})",
        "cold_first_request_ms": [round(c, 1) for c in cold],
        "warm_new_window_ms": summary(warm_new),
        "warm_repeat_ms": summary(warm_repeat),
        "baseline_uncached_ms": summary(uncached),
        "ratio_uncached_over_warm_new_p50": round(statistics.median(uncached) / statistics.median(warm_new), 1),
    }
    print(json.dumps(out, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
