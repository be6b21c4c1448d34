"""The built-in viewer's findings of issue 14, each asserted in Chromium: empty patient names,
CT presets only with Hounsfield units, invalid dates, zoom on tiny images, pressed states and
alt texts, the phone layout, the metadata panel, and window/level drawn in the browser."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from mvfixtures import PASSWORD, make_user, png_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicomweb"))
from ctgen import ct_series  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str = "reader") -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-button")
    page.wait_for_url(base + "/")


def store(data: bytes, user, group):
    from medvault.archive.uploads import upload_store

    [result] = upload_store(name="x.dcm", data=data, source="test", user=user, group=group)
    assert result.status == "stored", result.reason
    return result.instance


def tiny_ct() -> bytes:
    """A real CT slice cut down to 16x16 pixels (the size of the DICOMDIR sample series)."""
    [data] = ct_series(1, patient_id="TINY-1", patient_name="Tiny^Ct")
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[::8, ::8]).tobytes()
    ds.Rows = ds.Columns = 16
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def open_viewer(page, base: str, study_uid: str) -> None:
    page.goto(f"{base}/viewer/{study_uid}/")
    page.wait_for_function("document.getElementById('stage').dataset.loaded !== undefined")


def test_empty_name_presets_invalid_date_zoom_and_accessibility(mv_server, new_page, shot, blob_dir, group_a):
    from medvault.archive.uploads import image_store

    user = make_user("reader", "clinician", [group_a])
    for data in ct_series(3, patient_id="NONAME-1", patient_name=""):
        unnamed = store(data, user, group_a).series.study
    tiny = store(tiny_ct(), user, group_a).series.study
    png = image_store(data=png_bytes(64), patient_id="PNG-CT", patient_name="Png^Ct", modality="CT",
                      source="test", user=user, group=group_a)
    assert png.status == "stored"
    base = mv_server.url
    page = new_page()
    login(page, base)

    # A study without a patient name can be opened from Home and the Studies list.
    for where in ("/", "/studies/"):
        page.goto(base + where)
        link = page.locator(f"a[href='/studies/{unnamed.study_instance_uid}/']").first
        assert link.inner_text().strip() == "(no name)"
        assert link.bounding_box()["width"] > 20
    link.click()
    assert page.locator("#study-title").inner_text().startswith("(no name)")

    # An invalid date: the error, and no list of every study.
    page.goto(base + "/studies/?date_from=2024-02-30")
    assert "Enter a valid date." in page.content()
    assert page.locator("#search-invalid").is_visible()
    assert page.locator("#study-table .study-link").count() == 0
    page.goto(base + "/studies/")
    assert page.locator("#study-table .study-link").count() == 3

    # CT presets only where the pixels are Hounsfield units.
    open_viewer(page, base, unnamed.study_instance_uid)
    assert page.locator("button[data-preset=lung]").count() == 1
    open_viewer(page, base, png.instance.series.study.study_instance_uid)
    assert page.locator("button[data-preset]").count() == 0

    # Pressed states and thumbnail names.
    assert page.get_attribute("button[data-tool=wl]", "aria-pressed") == "true"
    page.click("button[data-tool=pan]")
    assert page.get_attribute("button[data-tool=pan]", "aria-pressed") == "true"
    assert page.get_attribute("button[data-tool=wl]", "aria-pressed") == "false"
    assert page.get_attribute("#invert", "aria-pressed") == "false"
    page.click("#invert")
    assert page.get_attribute("#invert", "aria-pressed") == "true"
    alts = page.eval_on_selector_all(".serieslist img", "els => els.map(e => e.alt)")
    assert alts and all("thumbnail" in a for a in alts)

    # Zoom on a 16x16 image: "zoom in" zooms in, well beyond 4000 %.
    open_viewer(page, base, tiny.study_instance_uid)
    zoom = lambda: int(page.locator("#hud-pos").inner_text().split("zoom ")[1].rstrip("%"))  # noqa: E731
    box = page.locator("#stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    before = zoom()
    assert before > 4000  # fitted: a 16-pixel image fills the stage
    page.keyboard.down("Control")
    for _ in range(3):
        page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    page.wait_for_timeout(200)
    assert zoom() > before
    shot(page, "21-viewer-tiny-zoomed")


def test_window_level_is_drawn_in_the_browser(mv_server, new_page, blob_dir, group_a):
    user = make_user("reader", "clinician", [group_a])
    for data in ct_series(3, patient_id="WL-1", patient_name="Window^Level"):
        study = store(data, user, group_a).series.study
    base = mv_server.url
    page = new_page()
    login(page, base)
    frame_requests = []
    page.on("request", lambda r: frame_requests.append(r.url) if "/frames/" in r.url and "/info" not in r.url else None)
    open_viewer(page, base, study.study_instance_uid)
    page.wait_for_function("document.getElementById('stage').dataset.window !== ''")
    first = page.evaluate("document.getElementById('frame').toDataURL()")
    draws = int(page.get_attribute("#stage", "data-draws"))
    page.wait_for_timeout(500)  # prefetch of the neighbours settles
    requested = len(frame_requests)
    assert all(u.split("?")[0].endswith(".pixels") for u in frame_requests)
    box = page.locator("#stage").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(cx + 6 * step, cy + 3 * step)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert int(page.get_attribute("#stage", "data-draws")) >= draws + 5
    assert len(frame_requests) == requested  # no request while dragging: the browser windows
    assert page.evaluate("document.getElementById('frame').toDataURL()") != first
    # The lung preset draws what the server's renderer draws for that window.
    page.click("button[data-preset=lung]")
    page.wait_for_function("document.getElementById('stage').dataset.window === '-600.0,1500.0'")
    index = int(page.get_attribute("#stage", "data-loaded"))
    from medvault.archive.models import Instance

    uid = list(Instance.objects.filter(series__study=study).order_by("instance_number"))[index].sop_instance_uid
    drawn = page.evaluate("""() => { const c = document.getElementById('frame');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data
            .filter((_, i) => i % 4 === 0)); }""")
    png = page.evaluate("""async (u) => { const r = await fetch(u); const b = await createImageBitmap(await r.blob());
        const c = new OffscreenCanvas(b.width, b.height); const x = c.getContext('2d'); x.drawImage(b, 0, 0);
        return Array.from(x.getImageData(0, 0, b.width, b.height).data.filter((_, i) => i % 4 === 0)); }""",
                        f"/frames/{uid}/0.png?wc=-600.0&ww=1500.0")
    assert np.abs(np.array(drawn, dtype=int) - np.array(png, dtype=int)).max() <= 1


def test_phone_layout_and_one_finger_pan(mv_server, browser, shot, blob_dir, group_a):
    user = make_user("reader", "clinician", [group_a])
    for data in ct_series(3, patient_id="PHONE-1", patient_name="Phone^Pan"):
        study = store(data, user, group_a).series.study
    base = mv_server.url
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  bypass_csp=True)
    page = context.new_page()
    login(page, base)
    open_viewer(page, base, study.study_instance_uid)
    page.wait_for_function("document.getElementById('stage').dataset.window !== ''")
    stage = page.locator("#stage").bounding_box()
    assert stage["y"] < 110 and stage["height"] > 300  # the image right under the toolbar (was y=371)
    shot(page, "22-viewer-phone")
    window = page.get_attribute("#stage", "data-window")
    transform = page.evaluate("document.getElementById('frame').style.transform")
    cdp = context.new_cdp_session(page)
    x, y = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, 11):
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x + 8 * step, "y": y + 5 * step}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(200)
    assert page.get_attribute("#stage", "data-window") == window  # not window/level
    assert page.evaluate("document.getElementById('frame').style.transform") != transform  # panned
    context.close()


def test_metadata_values_have_room_on_enhanced_ct(mv_server, new_page, blob_dir, group_a, shared_data):
    user = make_user("reader", "clinician", [group_a])
    data = (shared_data / "dicom" / "multiframe" / "eCT_Supplemental.dcm").read_bytes()
    study = store(data, user, group_a).series.study
    base = mv_server.url
    page = new_page()
    login(page, base)
    open_viewer(page, base, study.study_instance_uid)
    page.wait_for_function("document.getElementById('meta').rows.length > 10")
    cells = page.eval_on_selector_all(
        "#meta tr td:nth-child(2)",
        "tds => tds.map(td => { const r = td.getBoundingClientRect(); return [r.width, r.right]; })",
    )
    width = page.evaluate("window.innerWidth")
    assert cells and all(w >= 150 and right <= width + 1 for w, right in cells)


def test_colour_images_are_still_shown(mv_server, new_page, blob_dir, group_a):
    """A colour image (here a heat-map-like RGB upload) is windowed by the server and drawn."""
    from PIL import Image

    from medvault.archive.uploads import image_store

    user = make_user("reader", "clinician", [group_a])
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.dstack([x * 4, y * 5, 255 - x * 4]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    stored = image_store(data=buffer.getvalue(), patient_id="RGB-1", patient_name="Rgb^Png", modality="OT",
                         source="test", user=user, group=group_a)
    assert stored.status == "stored", stored.reason
    base = mv_server.url
    page = new_page()
    login(page, base)
    open_viewer(page, base, stored.instance.series.study.study_instance_uid)
    size = page.evaluate("[document.getElementById('frame').width, document.getElementById('frame').height]")
    assert size == [64, 48]
    pixel = page.evaluate(
        "Array.from(document.getElementById('frame').getContext('2d').getImageData(60, 2, 1, 1).data)"
    )
    assert pixel[0] > 200 and pixel[2] < 40  # red at the right edge, as uploaded
