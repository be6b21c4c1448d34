"""End-to-end in a real browser: the daily path of a radiologist, and the access rules."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from mvfixtures import PASSWORD, make_user, sample_bytes, stored_sample
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-button")


def synthetic_png(path) -> None:
    y, x = np.mgrid[0:256, 0:256]
    image = (x * 180 // 256 + 30).astype(np.uint8)
    image[(x - 128) ** 2 + (y - 110) ** 2 < 40**2] = 230
    image[(x - 90) ** 2 + (y - 170) ** 2 < 18**2] = 60
    Image.fromarray(image).save(path)


def test_register_approve_upload_search_view_logout(mv_server, new_page, shot, tmp_path, blob_dir, group_a):
    base = mv_server.url
    admin = make_user("chief", "administrator", full_name="Dr. Admin")
    admin.groups.add(group_a)

    page = new_page()
    page.goto(base + "/")
    assert page.locator("#hero-register").is_visible()
    shot(page, "01-landing")

    # Register.
    page.click("#hero-register")
    page.fill("#id_username", "rad1")
    page.fill("#id_full_name", "Robin Radiologist")
    page.fill("#id_email", "rad1@example.org")
    page.select_option("#id_role", "clinician")
    page.fill("#id_institution", "Example General Hospital")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    shot(page, "02-register")
    page.click("#register-button")
    assert "pending approval" in page.locator("#registered").inner_text()

    # Pending: refused with the reason.
    login(page, base, "rad1", PASSWORD)
    assert "waiting for approval" in page.content()
    shot(page, "03-login-pending")

    # The administrator approves and adds the account to a group.
    admin_page = new_page()
    login(admin_page, base, "chief", PASSWORD)
    admin_page.goto(base + "/accounts/users/?status=pending")
    row = admin_page.locator("#user-rad1")
    row.locator("select[name=group]").select_option(str(group_a.pk))
    row.locator("button:has-text('Add to group')").click()
    shot(admin_page, "04-users-admin")
    admin_page.locator("#approve-rad1").click()
    admin_page.goto(base + "/accounts/users/")
    assert "Approved" in admin_page.locator("#user-rad1").inner_text()

    # Log in and upload a DICOM and a PNG.
    login(page, base, "rad1", PASSWORD)
    assert page.url.rstrip("/") == base
    dicom = tmp_path / "CT_small.dcm"
    dicom.write_bytes(sample_bytes())
    png = tmp_path / "synthetic-chest.png"
    synthetic_png(png)
    page.goto(base + "/upload/")
    broken = tmp_path / "notes.dcm"
    broken.write_text("this is a text file, not DICOM")
    page.set_input_files("#file-input", [str(dicom), str(png), str(broken)])
    assert page.locator("#image-fields").is_visible()
    page.fill("#patient_id", "SYN-0001")
    page.fill("#patient_name", "Synthetic^Sam")
    page.select_option("#modality", "CT")
    page.fill("#body_part", "CHEST")
    page.fill("#study_description", "Synthetic test image")
    # Enter in a patient field must not submit the form (patient data would land in the URL).
    page.press("#patient_id", "Enter")
    page.wait_for_timeout(300)
    assert "SYN-0001" not in page.url and page.url.rstrip("/").endswith("/upload")
    page.click("#start-upload")
    page.wait_for_selector("#upload-form[data-finished='1']")
    assert "2 stored, 0 duplicate, 1 rejected" in page.locator("#summary").inner_text()
    assert page.locator(".filelist .tag-stored").count() == 2
    assert page.locator(".filelist .tag-rejected").count() == 1
    shot(page, "05-upload")

    # Search with a wildcard, case-insensitive.
    page.goto(base + "/studies/")
    page.fill("#id_patient_name", "compressed*")
    page.click("#search-button")
    links = page.locator("#study-table .study-link")
    assert links.count() == 1
    page.goto(base + "/studies/")
    assert page.locator("#study-table .study-link").count() == 2
    shot(page, "06-studies")
    # Responsive: on a phone-sized screen the page does not scroll sideways (tables do, inside).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "06b-studies-phone")
    page.set_viewport_size({"width": 1366, "height": 860})
    page.fill("#id_patient_name", "compressed*")
    page.click("#search-button")
    page.locator("#study-table .study-link").first.click()
    page.wait_for_selector(".thumb img")
    shot(page, "07-study")

    # Viewer: a frame appears; a preset and a drag change the window.
    page.click("#open-viewer")
    page.wait_for_function("document.getElementById('stage').dataset.loaded === '0'")
    page.wait_for_function("document.getElementById('meta').rows.length > 10")
    first_window = page.get_attribute("#stage", "data-window")
    page.click("button[data-preset=lung]")
    page.wait_for_function("document.getElementById('stage').dataset.window === '-600.0,1500.0'")
    box = page.locator("#stage").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy + 40, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "(w) => { const d = document.getElementById('stage').dataset.window; return d && d !== w; }",
        arg="-600.0,1500.0",
    )
    assert page.get_attribute("#stage", "data-window") not in (first_window, "-600.0,1500.0")
    assert "W " in page.locator("#hud-window").inner_text()
    page.click("button[data-preset=mediastinum]")
    page.wait_for_function("document.getElementById('stage').dataset.window === '50.0,350.0'")
    shot(page, "08-viewer")

    # Analyses: uploads queue them; run the queue here with the shipped models (if present).
    from medvault.analysis.backends import analysis_backend, models_available
    from medvault.analysis.models import AnalysisResult
    from medvault.analysis.services import jobs_drain

    if models_available():
        jobs_drain(backend=analysis_backend())
    page.goto(base + "/history/")
    shot(page, "09-history")
    with_heatmap = AnalysisResult.objects.exclude(heatmap_key="").order_by("-id").first()
    if with_heatmap is not None:
        page.locator(f"a[href*='result={with_heatmap.pk}']").first.click()
        page.wait_for_selector("#overlay-toggle:not([hidden])")
        page.wait_for_function("document.getElementById('stage').dataset.loaded !== undefined")
        assert page.locator("#overlay").is_visible()
        page.wait_for_timeout(300)
        shot(page, "09b-viewer-heatmap")
        page.click("#overlay-toggle")
        assert not page.locator("#overlay").is_visible()

    # Log out.
    page.click(".usermenu summary")
    page.click("#logout-button")
    page.wait_for_selector("#hero-login")
    page.goto(base + "/studies/")
    assert "/accounts/login/" in page.url

    admin_page.goto(base + "/")
    shot(admin_page, "10-home-admin")
    admin_page.goto(base + "/accounts/audit/")
    assert "upload" in admin_page.locator("#audit-table").inner_text()
    shot(admin_page, "11-audit")


def test_pending_user_cannot_log_in(mv_server, new_page):
    make_user("waiting", "clinician", status="pending")
    page = new_page()
    login(page, mv_server.url, "waiting", PASSWORD)
    assert "waiting for approval" in page.content()
    page.goto(mv_server.url + "/studies/")
    assert "/accounts/login/" in page.url


def test_group_a_user_cannot_open_group_b_study(
    mv_server, new_page, blob_dir, group_a, group_b, clinician_a, clinician_b
):
    instance = stored_sample(group_b, clinician_b)
    study_uid = instance.series.study.study_instance_uid
    page = new_page()
    login(page, mv_server.url, clinician_a.username, PASSWORD)
    page.goto(mv_server.url + "/studies/")
    assert study_uid not in page.content()
    assert "CompressedSamples" not in page.content()
    for path in (f"/studies/{study_uid}/", f"/viewer/{study_uid}/",
                 f"/frames/{instance.sop_instance_uid}/0.png",
                 f"/series/{instance.series.series_instance_uid}/thumbnail.png"):
        response = page.goto(mv_server.url + path)
        assert response.status == 404, path
        assert "CompressedSamples" not in page.content()
    # Guessing a neighbouring UID gives the same answer as a wrong one.
    response = page.goto(mv_server.url + f"/studies/{study_uid[:-1]}9/")
    assert response.status == 404


def test_researcher_sees_no_identifying_data(mv_server, new_page, shot, blob_dir, group_a, researcher_a, clinician_a):
    instance = stored_sample(group_a, clinician_a)
    study = instance.series.study
    patient = study.patient
    forbidden = [patient.patient_id, "CompressedSamples", study.accession_number]
    if patient.patient_birth_date:
        forbidden.append(patient.patient_birth_date.isoformat())
    forbidden = [f for f in forbidden if f]
    page = new_page()
    login(page, mv_server.url, researcher_a.username, PASSWORD)
    # Researchers address studies by pseudonymous UIDs (PS3.15 Annex E); the original is never shown.
    from medvault.web.uid_middleware import pseudonym_issue

    forbidden.append(study.study_instance_uid)
    st = pseudonym_issue(study.study_instance_uid)
    for path in ("/", "/studies/", f"/studies/{st}/", f"/viewer/{st}/"):
        page.goto(mv_server.url + path)
        if path.startswith("/viewer/"):
            page.wait_for_function("document.getElementById('meta').rows.length > 10")
            shot(page, "12-viewer-researcher")
        text = page.content()
        for secret in forbidden:
            assert secret not in text, (path, secret)
    assert re.search(r"ANON-[0-9A-F]{10}", page.content())


def test_viewer_heatmap_overlay_toggle(mv_server, new_page, blob_dir, group_a, clinician_a):
    """The viewer shows an analysis heat-map over the image and H / the button hide it.

    The result row and its overlay are made up here (a red square): this tests the viewer's
    hook, not a model."""
    from medvault.analysis.models import AnalysisJob, AnalysisResult
    from medvault.archive.blobstore import blob_store

    instance = stored_sample(group_a, clinician_a)
    overlay = np.zeros((instance.rows, instance.columns, 4), dtype=np.uint8)
    overlay[20:60, 30:70] = (255, 0, 0, 160)
    buffer = io.BytesIO()
    Image.fromarray(overlay, "RGBA").save(buffer, format="PNG")
    key = blob_store().put(buffer.getvalue())
    job = AnalysisJob.objects.create(instance=instance, model_name="lung-ct", requested_by=clinician_a, status="done")
    result = AnalysisResult.objects.create(
        job=job, instance=instance, model_name="lung-ct", label="normal", probabilities={"normal": 0.9},
        heatmap_key=key, heatmap_width=instance.columns, heatmap_height=instance.rows, requested_by=clinician_a,
    )
    page = new_page()
    login(page, mv_server.url, clinician_a.username, PASSWORD)
    study = instance.series.study
    page.goto(
        mv_server.url + f"/viewer/{study.study_instance_uid}/?instance={instance.sop_instance_uid}&result={result.pk}"
    )
    page.wait_for_selector("#overlay-toggle:not([hidden])")
    page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
    assert page.locator("#overlay").is_visible()
    assert "normal" in page.locator("#analysis-panel").inner_text()
    page.keyboard.press("h")
    assert not page.locator("#overlay").is_visible()
    page.click("#overlay-toggle")
    assert page.locator("#overlay").is_visible()


def test_find_similar_from_results_and_viewer(mv_server, new_page, shot, settings, tmp_path, blob_dir,
                                              group_a, group_b, clinician_a, clinician_b):
    """"Find similar" on the previous-results page and in the viewer's analysis panel leads to
    the grid; the grid never shows another group's image; compare is one click."""
    from mvfixtures import make_study

    from medvault.analysis.models import AnalysisJob, AnalysisResult
    from medvault.retrieval.index import reset_registry
    from medvault.retrieval.services import embedding_store

    settings.MEDVAULT_INDEX_DIR = tmp_path / "index"
    settings.MEDVAULT_INDEX_CHECK_SECONDS = 0
    reset_registry()
    instance = stored_sample(group_a, clinician_a)
    job = AnalysisJob.objects.create(instance=instance, model_name="lung-ct", requested_by=clinician_a, status="done")
    AnalysisResult.objects.create(job=job, instance=instance, model_name="lung-ct", label="adenocarcinoma",
                                  probabilities={"adenocarcinoma": 0.8}, requested_by=clinician_a)
    rng = np.random.default_rng(0)
    base = rng.normal(size=16).astype(np.float32)
    embedding_store(instance=instance, model_name="lung-ct", model_version="t", vector=base, label="adenocarcinoma")
    mine = make_study(group_a, uploaded_by=clinician_a).series.get().instances.get()
    embedding_store(instance=mine, model_name="lung-ct", model_version="t",
                    vector=base + 0.3 * rng.normal(size=16).astype(np.float32), label="squamous_cell_carcinoma")
    other = make_study(group_b, uploaded_by=clinician_b).series.get().instances.get()
    embedding_store(instance=other, model_name="lung-ct", model_version="t",
                    vector=base + 0.01 * rng.normal(size=16).astype(np.float32), label="normal")

    page = new_page()
    login(page, mv_server.url, clinician_a.username, PASSWORD)
    page.goto(mv_server.url + "/history/")
    page.click("#history-table a.find-similar")
    page.wait_for_selector(".sim-card")
    assert other.sop_instance_uid not in page.content()
    assert "squamous_cell_carcinoma" in page.locator("#sim-results").inner_text()
    shot(page, "13-similar")
    page.locator(".sim-card .sim-actions a", has_text="Compare").first.click()
    page.wait_for_url(re.compile("/compare/"))
    assert mine.sop_instance_uid in page.url or instance.sop_instance_uid in page.url

    # The viewer: the analysis panel's link for this result, and the toolbar button.
    study = instance.series.study
    page.goto(mv_server.url + f"/viewer/{study.study_instance_uid}/?instance={instance.sop_instance_uid}")
    page.wait_for_selector("#analysis-panel a.find-similar")
    assert instance.sop_instance_uid in page.get_attribute("#find-similar", "href")
    page.click("#analysis-panel a.find-similar")
    page.wait_for_selector(".sim-card")
    assert "model=lung-ct" in page.url and other.sop_instance_uid not in page.content()
    reset_registry()
