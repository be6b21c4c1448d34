"""In a real browser: results show the call first, the probability second, and link the
model card (intended use, known limits)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mvfixtures import PASSWORD, stored_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MODELS = Path(__file__).resolve().parents[2] / "models"


def login(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-button")


def test_results_show_the_call_first_and_link_the_model_card(mv_server, new_page, shot, settings,
                                                             blob_dir, group_a, clinician_a):
    from medvault.analysis.models import AnalysisJob, AnalysisResult

    settings.MEDVAULT_MODELS_DIR = MODELS
    instance = stored_sample(group_a, clinician_a)
    job = AnalysisJob.objects.create(instance=instance, model_name="lung-ct",
                                     requested_by=clinician_a, status="done")
    AnalysisResult.objects.create(
        job=job, instance=instance, model_name="lung-ct", label="adenocarcinoma",
        probabilities={"adenocarcinoma": 0.62, "normal": 0.38}, requested_by=clinician_a,
        call="indeterminate", call_reason="a tumour cannot be excluded; needs a radiologist's read")
    page = new_page()
    login(page, mv_server.url, clinician_a.username, PASSWORD)
    page.goto(mv_server.url + "/history/")
    headers = [h.strip() for h in page.locator("#history-table thead th").all_text_contents()]
    assert headers.index("Call") < headers.index("Result") < headers.index("Confidence")
    row = page.locator("#history-table tbody tr").first
    cells = row.locator("td").all_text_contents()
    assert cells[headers.index("Call")].startswith("Indeterminate")
    assert "radiologist" in cells[headers.index("Call")]
    assert "62" in cells[headers.index("Confidence")]
    shot(page, "20-call-first")
    # the study page shows it as well
    page.goto(mv_server.url + f"/studies/{instance.series.study.study_instance_uid}/")
    assert page.locator("[data-call=indeterminate]").first.is_visible()
    # the card: intended use and known limits
    page.goto(mv_server.url + "/history/")
    row = page.locator("#history-table tbody tr").first
    row.locator("a.model-card-link").click()
    page.wait_for_selector("#intended-use")
    assert "/models/lung-ct/" in page.url
    assert "decision support" in page.locator("#intended-use").inner_text().lower()
    assert page.locator("#known-limits li").count() >= 1
    assert "Never trained" in page.content()
    shot(page, "21-model-card", full_page=True)


def test_viewer_panel_shows_the_call_before_the_label_and_links_the_card(mv_server, new_page, shot, settings,
                                                                          blob_dir, group_a, clinician_a):
    """The viewer's analysis panel, where a radiologist reads the result beside the image,
    leads with the call and its reason; the label and probability follow; the card is linked."""
    from medvault.analysis.models import AnalysisJob, AnalysisResult

    settings.MEDVAULT_MODELS_DIR = MODELS
    instance = stored_sample(group_a, clinician_a)
    job = AnalysisJob.objects.create(instance=instance, model_name="lung-ct",
                                     requested_by=clinician_a, status="done")
    AnalysisResult.objects.create(
        job=job, instance=instance, model_name="lung-ct", label="normal",
        probabilities={"adenocarcinoma": 0.07, "normal": 0.93}, requested_by=clinician_a,
        call="indeterminate", call_reason="outside validated conditions")
    page = new_page()
    login(page, mv_server.url, clinician_a.username, PASSWORD)
    study_uid = instance.series.study.study_instance_uid
    page.goto(mv_server.url + f"/viewer/{study_uid}/?instance={instance.sop_instance_uid}")
    page.wait_for_selector("#analysis-panel [data-call]")
    panel = page.locator("#analysis-panel")
    assert panel.locator("[data-call]").first.get_attribute("data-call") == "indeterminate"
    text = panel.inner_text()
    # A "normal, 93 %" label must not read as the answer: the call and its reason come first.
    assert text.index("Indeterminate") < text.index("outside validated conditions") < text.index("93%")
    link = panel.locator("a.model-card-link").first
    assert link.get_attribute("href").rstrip("/").endswith("/models/lung-ct")
    shot(page, "22-viewer-call-first")
    link.click()
    page.wait_for_selector("#intended-use")
