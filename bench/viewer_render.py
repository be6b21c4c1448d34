"""Built-in viewer in headless Chromium: time to the first image, and window/level redraws
per second while dragging, on a 512x512 CT.

Run (real CT from ../shared/data):

    .venv/bin/python bench/viewer_render.py [--seconds 3] [--runs 3]

In one run, on a throw-away installation (SQLite file + blob store in a temp dir):

1. stores ``dicom/multiframe/eCT_Supplemental.dcm`` (512x512, 16-bit CT, 2 frames) through
   the archive's ingest service;
2. starts ``medvault serve`` (gunicorn, 2 workers) on a free loopback port;
3. Debian's headless Chromium (Playwright) logs in and opens the viewer:
   * ``first_image_ms``: from the start of the navigation to the first image drawn in the
     viewer's canvas (the page's own ``performance.now()``), cold (first open) and warm;
   * ``wl_drag_redraws_per_s``: a left-button drag of ``--seconds`` s across the image (one
     mouse move per ~8 ms); the viewer windows the frame's Hounsfield values in the browser
     and counts its redraws (``#stage[data-draws]``). Playwright's mouse moves arrive at the
     rate its round trips allow, so ``wl_drag_at_display_rate_redraws_per_s`` also drags with
     one pointer move per animation frame (the viewer redraws at most once per frame);
   * baseline in the same run, ``server_png_redraws_per_s``: what the viewer did before, one
     server-rendered PNG per window (fetch ``/frames/<uid>/0.png?wc=..&ww=..`` with a new
     window each time, decode, draw), back to back for the same time.

Prints one JSON object, with the ratio of the display-rate drag to the server-PNG baseline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = SHARED / "dicom" / "multiframe" / "eCT_Supplemental.dcm"
sys.path.insert(0, str(ROOT / "bench"))

from throwaway import bench_clinician, medvault_served, throwaway_installation  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# A drag at the display's rate: one pointermove per animation frame (the real mouse button is
# down, so the viewer is dragging), as a fast hand on a 60 Hz screen gives.
DRAG_AT_DISPLAY_RATE_JS = """async (seconds) => {
  const stage = document.getElementById('stage'); const r = stage.getBoundingClientRect();
  const x0 = r.left + r.width * 0.3, y0 = r.top + r.height * 0.3;
  const d0 = +stage.dataset.draws, t0 = performance.now(); let i = 0;
  await new Promise(done => { function step() {
    i += 1;
    stage.dispatchEvent(new PointerEvent('pointermove', {clientX: x0 + (i % 200) * 2, clientY: y0 + (i % 150),
                                                         pointerId: 1, pointerType: 'mouse', bubbles: true}));
    if (performance.now() - t0 < seconds * 1000) requestAnimationFrame(step); else done();
  } requestAnimationFrame(step); });
  return (+stage.dataset.draws - d0) / ((performance.now() - t0) / 1000);
}"""
SERVER_PNG_LOOP_JS = """async ([uid, seconds]) => {
  const canvas = document.createElement('canvas'); const ctx = canvas.getContext('2d');
  const end = performance.now() + seconds * 1000; let n = 0;
  while (performance.now() < end) {
    const r = await fetch(`/frames/${uid}/0.png?wc=${40 + n}&ww=${400 + 3 * n}`);
    const bitmap = await createImageBitmap(await r.blob());
    canvas.width = bitmap.width; canvas.height = bitmap.height; ctx.drawImage(bitmap, 0, 0); n += 1;
  }
  return n / seconds;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not SAMPLE.is_file():
        raise SystemExit(f"real data not found at {SAMPLE}")
    tmp = throwaway_installation("mv-bench-viewer-", MEDVAULT_ALLOWED_HOSTS="127.0.0.1,localhost")
    from django.core.management import call_command

    from medvault.archive.uploads import upload_store

    call_command("collectstatic", interactive=False, verbosity=0)
    user, group = bench_clinician()
    [result] = upload_store(name=SAMPLE.name, data=SAMPLE.read_bytes(), source="bench", user=user, group=group)
    assert result.status == "stored", result.reason
    instance = result.instance
    try:
        with medvault_served() as base:
            out = measure(base, instance, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["image"] = (f"{SAMPLE.relative_to(SHARED)} ({instance.rows}x{instance.columns}, "
                    f"{instance.number_of_frames} frames, stored as {instance.transfer_syntax_uid})")
    print(json.dumps(out, indent=2))


def measure(base: str, instance, args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    study_uid = instance.series.study.study_instance_uid
    first, client_rates, display_rates, server_rates = [], [], [], []
    with sync_playwright() as p:
        profile = tempfile.mkdtemp(prefix="mv-bench-chromium-")
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, viewport={"width": 1366, "height": 860},
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"])
        page = context.new_page()
        page.goto(base + "/accounts/login/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", "x" * 12)
        page.click("#login-button")
        page.wait_for_load_state()
        for _ in range(args.runs):
            page.goto(f"{base}/viewer/{study_uid}/")
            deadline = time.perf_counter() + 30
            while page.get_attribute("#frame", "data-ms") is None:
                if time.perf_counter() > deadline:
                    raise TimeoutError("no image in the viewer after 30 s")
                time.sleep(0.01)
            first.append(float(page.get_attribute("#frame", "data-ms")))
            time.sleep(0.5)  # the neighbours' prefetch settles
            box = page.locator("#stage").bounding_box()
            x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
            page.mouse.move(x, y)
            page.mouse.down()
            draws = int(page.get_attribute("#stage", "data-draws"))
            started, step = time.perf_counter(), 0
            while time.perf_counter() - started < args.seconds:
                step += 1
                page.mouse.move(x + (step % 200) * 2, y + (step % 150))
                time.sleep(0.008)
            elapsed = time.perf_counter() - started
            page.mouse.up()
            client_rates.append((int(page.get_attribute("#stage", "data-draws")) - draws) / elapsed)
            page.mouse.move(x, y)
            page.mouse.down()
            display_rates.append(page.evaluate(DRAG_AT_DISPLAY_RATE_JS, args.seconds))
            page.mouse.up()
            server_rates.append(page.evaluate(SERVER_PNG_LOOP_JS, [instance.sop_instance_uid, args.seconds]))
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "first_image_ms": {"cold": first[0], "warm": first[1:]},
        "wl_drag_redraws_per_s": [round(r, 1) for r in client_rates],
        "wl_drag_at_display_rate_redraws_per_s": [round(r, 1) for r in display_rates],
        "server_png_redraws_per_s": [round(r, 1) for r in server_rates],
        "ratio_display_rate_drag_over_server_png_median": round(
            statistics.median(display_rates) / statistics.median(server_rates), 2),
    }


if __name__ == "__main__":
    main()
