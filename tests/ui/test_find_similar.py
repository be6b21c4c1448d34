"""The "Find similar" button: in the viewer and on every results page (home, study page,
previous results), for users who may search; it leads to the similar-images grid, which
shows only images the user may see, de-identified for researchers."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import numpy as np
import pytest
from django.test import Client
from mvfixtures import PASSWORD, make_study

from medvault.accounts import permissions
from medvault.accounts.models import Role

pytestmark = pytest.mark.django_db
DIM = 16
BUTTON = re.compile(r'<a class="[^"]*find-similar[^"]*" href="([^"]+)"')


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def analysed(settings, tmp_path, stored_ct, clinician_a, clinician_b, group_a, group_b):
    """The stored CT of group A with a lung-ct result (and its embedding) and a refused
    brain-mri result; one embedded image in each group, group B's nearest to the query."""
    from medvault.analysis.models import AnalysisJob, AnalysisResult
    from medvault.retrieval.index import reset_registry
    from medvault.retrieval.services import embedding_store

    settings.MEDVAULT_INDEX_DIR = tmp_path / "index"
    settings.MEDVAULT_INDEX_CHECK_SECONDS = 0
    settings.MEDVAULT_INDEX_SAVE_SECONDS = 0
    reset_registry()
    job = AnalysisJob.objects.create(instance=stored_ct, model_name="lung-ct", requested_by=clinician_a, status="done")
    ok = AnalysisResult.objects.create(job=job, instance=stored_ct, model_name="lung-ct", label="adenocarcinoma",
                                       probabilities={"adenocarcinoma": 0.87, "normal": 0.13}, requested_by=clinician_a)
    job2 = AnalysisJob.objects.create(
        instance=stored_ct, model_name="brain-mri", requested_by=clinician_a, status="done"
    )
    refused = AnalysisResult.objects.create(job=job2, instance=stored_ct, model_name="brain-mri", refused=True,
                                            reason="out of domain: DICOM Modality is CT", requested_by=clinician_a)
    base = _unit(0)
    embedding_store(instance=stored_ct, model_name="lung-ct", model_version="fake-1", vector=base,
                    label="adenocarcinoma")
    mine = make_study(group_a, patient_id="MINE-PID", patient_name="Mine^Patient").series.get().instances.get()
    embedding_store(instance=mine, model_name="lung-ct", model_version="fake-1", vector=base + 0.2 * _unit(1),
                    label="squamous_cell_carcinoma")
    other = make_study(group_b, patient_id="OTHER-PID", patient_name="Other^Patient").series.get().instances.get()
    embedding_store(instance=other, model_name="lung-ct", model_version="fake-1", vector=base + 0.01 * _unit(2),
                    label="normal")
    yield {"instance": stored_ct, "ok": ok, "refused": refused, "mine": mine, "other": other}
    reset_registry()


def _pseudonym(uid: str) -> str:
    """A researcher's address of ``uid`` (PS3.15 Annex E pseudonymous UIDs), as if shown."""
    from medvault.web.uid_middleware import pseudonym_issue

    return pseudonym_issue(uid)


def _expected_link(instance, researcher: bool = False) -> str:
    uid = _pseudonym(instance.sop_instance_uid) if researcher else instance.sop_instance_uid
    return f"/similar/{quote(uid, safe='')}/?model=lung-ct"


def _viewer_config(html: str) -> dict:
    return json.loads(html.split('id="viewer-config" type="application/json">')[1].split("</script>")[0])


def test_results_pages_offer_find_similar_for_the_analysed_image(analysed, clinician_a):
    client = login(clinician_a)
    study = analysed["instance"].series.study
    for url in ("/history/", "/", f"/studies/{study.study_instance_uid}/"):
        html = client.get(url).content.decode()
        # One button: for the lung-ct result; the refused brain-mri result has no embedding.
        assert BUTTON.findall(html) == [_expected_link(analysed["instance"])], url
        assert "Not analysed: out of domain" in html or url == "/"


def test_viewer_has_the_button_in_toolbar_and_a_static_script(analysed, clinician_a):
    study = analysed["instance"].series.study
    html = login(clinician_a).get(f"/viewer/{study.study_instance_uid}/").content.decode()
    assert _viewer_config(html)["similarUrl"] == "/similar/__UID__/"
    toolbar = re.search(r'<a class="btn-tool" id="find-similar"[^>]*>', html).group(0)
    assert "hidden" not in toolbar
    # No inline script (the Content-Security-Policy blocks it): the button is wired by viewer.js.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert all('type="application/json"' in attrs or (not body.strip() and "src=" in attrs)
               for attrs, body in scripts), scripts
    assert "/static/ui/viewer.js" in html


def test_the_button_leads_to_the_grid_of_visible_matches(analysed, clinician_a):
    client = login(clinician_a)
    link = BUTTON.findall(client.get("/history/").content.decode())[0]
    page = client.get(link)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="sim-card"' in html and "squamous_cell_carcinoma" in html
    assert f"/similar/{analysed['instance'].sop_instance_uid}/compare/{analysed['mine'].sop_instance_uid}/" in html
    # Group B's image is the nearest vector but must not appear.
    assert analysed["other"].sop_instance_uid not in html


def test_researcher_gets_the_button_and_a_deidentified_grid(analysed, researcher_a):
    client = login(researcher_a)
    history = client.get("/history/").content.decode()
    [link] = BUTTON.findall(history)
    html = client.get(link).content.decode()
    assert 'class="sim-card"' in html
    for secret in ("MINE-PID", "Mine^Patient", "Mine Patient", "OTHER-PID", analysed["other"].sop_instance_uid,
                   analysed["instance"].series.study.patient.patient_id):
        assert secret not in html, secret
    query, mine = (_pseudonym(analysed[k].sop_instance_uid) for k in ("instance", "mine"))
    assert analysed["mine"].sop_instance_uid not in html and mine in html
    compare = client.get(f"/similar/{query}/compare/{mine}/")
    assert compare.status_code == 200
    assert "MINE-PID" not in compare.content.decode() and "Mine^Patient" not in compare.content.decode()


def test_other_group_sees_no_button_and_cannot_open_the_grid(analysed, clinician_b):
    client = login(clinician_b)
    assert BUTTON.findall(client.get("/history/").content.decode()) == []
    assert BUTTON.findall(client.get("/").content.decode()) == []
    assert client.get(_expected_link(analysed["instance"])).status_code == 404


def test_role_without_search_sees_no_button(analysed, researcher_a, monkeypatch):
    monkeypatch.setitem(permissions._ROLE_ACTIONS, Role.RESEARCHER, frozenset({"view"}))  # noqa: SLF001
    client = login(researcher_a)
    history = client.get("/history/").content.decode()
    assert "adenocarcinoma" in history and BUTTON.findall(history) == []
    study = analysed["instance"].series.study
    viewer = client.get(f"/viewer/{_pseudonym(study.study_instance_uid)}/").content.decode()
    assert _viewer_config(viewer)["similarUrl"] == ""
    assert re.search(r'<a class="btn-tool" id="find-similar"[^>]*\bhidden\b', viewer)
    assert client.get(_expected_link(analysed["instance"], True)).status_code == 404


def test_analysis_api_gives_the_similar_link_the_viewer_panel_shows(analysed, clinician_a, researcher_a,
                                                                   clinician_b, monkeypatch):
    """The viewer's analysis panel (viewer.js) shows "Find similar" from ``similar_url`` of
    /api/v1/analyses: set for results with an embedding, null for refused ones and for roles
    that may not search; another group gets no result at all."""
    uid = analysed["instance"].sop_instance_uid
    ok, refused = analysed["ok"].pk, analysed["refused"].pk
    for user, researcher in ((clinician_a, False), (researcher_a, True)):
        client = login(user)
        address = _pseudonym(uid) if researcher else uid
        link = _expected_link(analysed["instance"], researcher)
        listing = {r["id"]: r for r in client.get("/api/v1/analyses", {"instance": address}).json()["results"]}
        assert listing[ok]["similar_url"] == link
        assert listing[refused]["similar_url"] is None
        assert client.get(f"/api/v1/analyses/{ok}").json()["similar_url"] == link
    assert login(clinician_b).get(f"/api/v1/analyses/{ok}").status_code == 404
    monkeypatch.setitem(permissions._ROLE_ACTIONS, Role.RESEARCHER, frozenset({"view"}))  # noqa: SLF001
    assert login(researcher_a).get(f"/api/v1/analyses/{ok}").json()["similar_url"] is None

    from pathlib import Path

    import medvault.ui

    js = (Path(medvault.ui.__file__).parent / "static" / "ui" / "viewer.js").read_text()
    assert "r.similar_url" in js and 'link.textContent = "Find similar"' in js
