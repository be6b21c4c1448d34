"""Production security settings: `medvault check --deploy` is clean; headers on pages."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

MEDVAULT = str(Path(sys.executable).with_name("medvault"))


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVAULT_")}
    env.update(
        MEDVAULT_HTTPS="true",
        MEDVAULT_SECRET_KEY=secrets.token_urlsafe(50),
        MEDVAULT_DATA_DIR=str(tmp_path),
        MEDVAULT_ALLOWED_HOSTS="medvault.example.org",
    )
    env.pop("DATABASE_URL", None)
    # The browser tests' Playwright loop needs this in the test process; production never has it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [MEDVAULT, "check", "--deploy", "--fail-level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_a_placeholder_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVAULT_")}
    env.update(MEDVAULT_HTTPS="true", MEDVAULT_SECRET_KEY="change-me", MEDVAULT_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [MEDVAULT, "check", "--deploy"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode != 0
    assert "placeholder" in result.stderr


@pytest.mark.django_db
def test_pages_carry_csp_nosniff_frame_deny_and_hsts(settings, blob_dir) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    client = Client()
    response = client.get("/admin/login/", secure=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    # JSON answers need no CSP, but still get nosniff.
    health = client.get("/healthz", secure=True)
    assert "Content-Security-Policy" not in health
    assert health["X-Content-Type-Options"] == "nosniff"
