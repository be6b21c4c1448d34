"""OHIF Viewer at /ohif/ without a browser: its page, policy, configuration and the links to it.

Skipped, with the reason, when the OHIF bundle is absent (``make install`` fetches it).
"""

from __future__ import annotations

import pytest

from medvault.ui.ohif import ohif_available

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not ohif_available(), reason="the OHIF Viewer bundle is not installed "
                       "(.ohif/dist): `make install` fetches it with npm"),
]


def test_ohif_page_policy_and_config(client, clinician_a, settings):
    """The OHIF page has its own CSP (workers, wasm); other pages keep the strict one; the
    configuration points at /dicomweb on the same origin and holds no token."""
    client.force_login(clinician_a)
    page = client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
    assert page.status_code == 200
    csp = page["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in csp and "worker-src 'self' blob:" in csp
    assert "'unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", "")
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    body = page.content.decode()
    assert "<script>" not in body and 'src="/ohif/app.bundle.' in body
    home = client.get("/")
    assert "wasm-unsafe-eval" not in home["Content-Security-Policy"]
    config = client.get("/ohif/app-config.js").content.decode()
    assert '"/dicomweb"' in config and "token" not in config.lower()
    assert client.get("/ohif/no-such-chunk.js").status_code == 404
    # A path is looked up in the bundle's file list, never joined onto the filesystem.
    assert b"[project]" not in client.get("/ohif/..%2F..%2F..%2Fpyproject.toml").content
    assert b"[project]" not in client.get("/ohif/../../../pyproject.toml").content
    # The bundle's own files (no patient data, the same bytes for everyone) keep a cache
    # lifetime through the no-store rule for computed answers; the config does not.
    bundle_name = "app.bundle." + body.split('src="/ohif/app.bundle.')[1].split('"')[0]
    bundle = client.get("/ohif/" + bundle_name)
    assert bundle.status_code == 200 and "max-age=86400" in bundle["Cache-Control"]
    assert "no-store" not in bundle["Cache-Control"]
    assert "no-store" in client.get("/ohif/app-config.js")["Cache-Control"]
    client.logout()
    assert client.get("/ohif/app-config.js").status_code == 302


def test_open_in_ohif_links(client, clinician_a, group_a, blob_dir):
    """The study list, the study page and the built-in viewer link to the study in OHIF."""
    from mvfixtures import stored_sample

    uid = stored_sample(group_a, clinician_a).series.study.study_instance_uid
    client.force_login(clinician_a)
    href = f'href="/ohif/viewer?StudyInstanceUIDs={uid}"'
    for page in ("/studies/", f"/studies/{uid}/", f"/viewer/{uid}/"):
        body = client.get(page).content.decode()
        assert href in body and "Open in OHIF" in body, page
