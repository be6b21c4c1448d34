"""OHIF Viewer: time to the first image of a 100-slice CT, and what OHIF asks of /dicomweb.

Run (real CT from ../shared/data; the OHIF bundle from ``make install``):

    .venv/bin/python bench/ohif_first_image.py [--slices 100] [--runs 3]

In one run, on a throw-away installation (SQLite file + blob store in a temp dir):

1. stores a ``--slices``-slice 512x512 CT series (bench/ctseries.py, derived from real CT)
   through the archive's ingest service;
2. starts ``medvault serve`` (gunicorn, 2 workers) on a free loopback port;
3. headless Chromium (Debian's, via Playwright) logs in and opens
   ``/ohif/viewer?StudyInstanceUIDs=<uid>``; the time runs from the navigation until the
   viewport's canvas holds a non-blank image. ``cold`` is the first open (the 17 MB bundle
   not yet in the browser cache), ``warm`` the following opens in the same browser (a
   profile on disk, so its HTTP cache holds the bundle, as a radiologist's browser does).

Prints one JSON object: the timings in ms and every /dicomweb request OHIF made, grouped by
kind with its HTTP statuses (the log the DICOMweb gaps were found with).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ctseries import ENHANCED_CT, ct_series_512  # noqa: E402
from throwaway import bench_clinician, medvault_served, throwaway_installation  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
# True once a viewport canvas shows something other than one flat colour.
CANVAS_DRAWN_JS = """() => {
  for (const c of document.querySelectorAll('canvas.cornerstone-canvas')) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4 * 97) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
    }
  }
  return false;
}"""


def request_kind(path: str) -> str:
    """A /dicomweb path with its UIDs and frame numbers taken out."""
    path = re.sub(r"/(studies|series|instances)/[0-9.]+", r"/\1/{uid}", path)
    return re.sub(r"/frames/[0-9,]+", "/frames/{n}", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not ENHANCED_CT.is_file():
        raise SystemExit(f"real data not found at {ENHANCED_CT}")
    tmp = throwaway_installation("mv-bench-ohif-", MEDVAULT_ALLOWED_HOSTS="127.0.0.1,localhost")
    from medvault.archive.uploads import upload_store
    from medvault.ui.ohif import ohif_available

    if not ohif_available():
        raise SystemExit("the OHIF bundle is not installed: run `make install`")
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    user, group = bench_clinician()
    study_uid, blobs = ct_series_512(args.slices)
    for i, data in enumerate(blobs):
        [result] = upload_store(name=f"{i}.dcm", data=data, source="bench", user=user, group=group)
        assert result.status == "stored", result.reason
    try:
        with medvault_served() as base:
            out = measure(base, study_uid, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["series"] = f"{args.slices} slices, 512x512 16-bit CT derived from {ENHANCED_CT.name}"
    print(json.dumps(out, indent=2))


def wait_drawn(page, timeout_s: float) -> None:
    """Poll the canvas from Python: ``wait_for_function`` evaluates a string in the page,
    which OHIF's Content-Security-Policy (no 'unsafe-eval') rightly refuses."""
    deadline = time.perf_counter() + timeout_s
    while not page.evaluate(CANVAS_DRAWN_JS):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no image in the OHIF viewport after {timeout_s} s")
        time.sleep(0.02)


def measure(base: str, study_uid: str, args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    requests: dict[str, Counter] = defaultdict(Counter)
    with sync_playwright() as p:
        # A profile on disk, as a radiologist's browser has: its HTTP cache keeps the 17 MB
        # bundle between opens (an incognito context's memory cache does not hold it).
        profile = tempfile.mkdtemp(prefix="mv-bench-chromium-")
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": 1366, "height": 860})
        page = context.new_page()

        marks: dict[str, float] = {}

        def on_response(response) -> None:
            path = response.url.removeprefix(base)
            if path.startswith("/dicomweb"):
                kind = request_kind(path.split("?")[0])
                requests[kind][response.status] += 1
                marks.setdefault("first_dicomweb_answer" if "/frames/" not in kind else "first_frame_answer",
                                 time.perf_counter())

        page.on("response", on_response)
        ohif_timer: list[float] = []
        page.on("console", lambda m: ohif_timer.append(float(m.text.split(":")[1].split()[0]))
                if m.text.startswith("studyToFirstImage:") else None)
        if os.environ.get("BENCH_DEBUG"):
            page.on("console", lambda m: print("console", m.type, m.text[:300], file=sys.stderr))
            page.on("response", lambda r: print(r.status, r.url[:160], file=sys.stderr))
        page.goto(base + "/accounts/login/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", "x" * 12)
        page.click("#login-button")
        page.wait_for_load_state()
        times, phases = [], []
        for _ in range(args.runs):
            page.goto("about:blank")
            marks.clear()
            started = time.perf_counter()
            page.goto(f"{base}/ohif/viewer?StudyInstanceUIDs={study_uid}")
            wait_drawn(page, 60)
            times.append((time.perf_counter() - started) * 1000)
            phases.append({k: round((v - started) * 1000) for k, v in sorted(marks.items(), key=lambda kv: kv[1])})
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "cold_first_image_ms": round(times[0], 1),
        "warm_first_image_ms": [round(t, 1) for t in times[1:]],
        "warm_median_ms": round(statistics.median(times[1:]), 1) if len(times) > 1 else None,
        "phases_ms_after_navigation": phases,
        "ohif_own_studyToFirstImage_ms": [round(t, 1) for t in ohif_timer],
        "dicomweb_requests": {k: dict(v) for k, v in sorted(requests.items())},
    }


if __name__ == "__main__":
    main()
