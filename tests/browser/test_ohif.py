"""OHIF Viewer at /ohif/, in Chromium, reading only through MedVault's DICOMweb.

Skipped, with the reason, when the OHIF bundle is absent (``make install`` or ``make test``
fetch it with npm). The page keeps its own Content-Security-Policy here (no ``bypass_csp``):
the test proves OHIF works under it, and polls the page from Python because a string
predicate (``wait_for_function``) is, rightly, refused by that policy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from mvfixtures import PASSWORD, make_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicomweb"))
from ctgen import ct_series  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
# WebGL through SwiftShader (software): OHIF's cornerstone renders with it, as on a machine
# without a GPU; --disable-gpu would leave it to a slower CPU path with a warning dialog.
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
VIEWPORT_PIXELS_JS = """() => {
  const c = document.querySelector('canvas.cornerstone-canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let distinct = new Set();
  for (let i = 0; i < d.length; i += 4 * 13) distinct.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
  return {distinct: distinct.size, sample: Array.from(d.filter((_, i) => i % 53 === 0))};
}"""
ANNOTATION_TEXT_JS = """() => Array.from(document.querySelectorAll('svg text, svg tspan'))
  .map(t => t.textContent).join(' ')"""


@pytest.fixture(scope="module")
def ohif_browser():
    from medvault.ui.ohif import ohif_available

    if not ohif_available():
        pytest.skip("the OHIF Viewer bundle is not installed (.ohif/dist): `make install` fetches it with npm")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e .[test])")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def poll(page, script: str, accept, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s; last value {str(value)[:200]}")
        time.sleep(0.1)


def test_ohif_opens_ct_scrolls_and_measures(mv_server, ohif_browser, shot, blob_dir, group_a, settings, tmp_path):
    from analysis.fake_backend import FakeBackend

    from medvault.analysis import services
    from medvault.archive.uploads import upload_store

    settings.MEDVAULT_AUTO_ANALYSE = False
    user = make_user("reader", "clinician", [group_a])
    blobs = ct_series(6, patient_id="OHIF-1", patient_name="Ohif^Test")
    for i, data in enumerate(blobs):
        [result] = upload_store(name=f"{i}.dcm", data=data, source="test", user=user, group=group_a)
        assert result.status == "stored", result.reason
    study_uid = result.instance.series.study.study_instance_uid
    # One slice analysed: its report (SR) and heat-map (Secondary Capture) are in the study.
    settings.MEDVAULT_MODELS_DIR = tmp_path / "models"
    settings.MEDVAULT_MODELS_DIR.mkdir()
    (settings.MEDVAULT_MODELS_DIR / "lung-ct.onnx").write_bytes(b"placeholder: the fake model never reads it")
    services.job_enqueue(instance=result.instance, model_name="lung-ct", requested_by=user)
    assert [o.status for o in services.jobs_drain(backend=FakeBackend())] == ["done"]
    base = mv_server.url

    context = ohif_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(60000)
    page = context.new_page()
    violations, dicomweb = [], []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("response", lambda r: dicomweb.append((r.status, r.url)) if "/dicomweb/" in r.url else None)

    # Logged out: /ohif/ sends to the login page, and back to the viewer afterwards.
    viewer_url = f"{base}/ohif/viewer?StudyInstanceUIDs={study_uid}"
    page.goto(viewer_url)
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "reader")
    page.fill("#id_password", PASSWORD)
    page.click("#login-button")
    page.wait_for_url("**/ohif/viewer**")

    first = poll(page, VIEWPORT_PIXELS_JS, lambda v: v is not None and v["distinct"] > 20)
    # The study browser lists the CT and the AI results' own series (SR, heat-map).
    browser_text = poll(page, "() => document.body.innerText", lambda t: "SR" in t and "OT" in t, 30)
    assert "CT" in browser_text
    canvas = page.locator("canvas.cornerstone-canvas").first
    box = canvas.bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    # Scroll to the next image: the pixels change (every generated slice differs).
    page.mouse.move(*centre)
    page.mouse.wheel(0, 120)
    poll(page, VIEWPORT_PIXELS_JS, lambda v: v is not None and v["sample"] != first["sample"], 30)

    # Draw a length measurement: the annotation's text box shows a length in mm.
    page.locator("[data-cy='MeasurementTools-split-button-primary'], [data-cy='Length']").first.click()
    page.mouse.move(centre[0] - 80, centre[1] - 40)
    page.mouse.down()
    page.mouse.move(centre[0] + 20, centre[1] + 10, steps=8)
    page.mouse.move(centre[0] + 80, centre[1] + 40, steps=8)
    page.mouse.up()
    text = poll(page, ANNOTATION_TEXT_JS, lambda t: "mm" in t, 20)
    assert any(ch.isdigit() for ch in text)
    shot(page, "20-ohif-ct-length")

    assert violations == [], violations[:3]
    failed = [(s, u) for s, u in dicomweb if s >= 400]
    assert failed == [], failed[:5]
    kinds = {u.split("/dicomweb/")[1].split("?")[0].split("/")[-1] for _, u in dicomweb}
    assert {"series", "metadata"} <= kinds
    assert any("/frames/" in u for _, u in dicomweb)
    context.close()
