"""The files in deploy/ are valid for the programs that read them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(NGINX is None or shutil.which("openssl") is None,
                    reason="nginx or openssl not installed (Debian: nginx-light, openssl)")
def test_nginx_site_configuration_passes_nginx_t(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=medvault.example.org", "-keyout", str(tmp_path / "privkey.pem"),
         "-out", str(tmp_path / "fullchain.pem")],
        check=True, capture_output=True, timeout=120,
    )
    site = (DEPLOY / "nginx" / "medvault.conf").read_text()
    site = (site.replace("/etc/ssl/medvault/", f"{tmp_path}/")
                .replace("/etc/medvault/nginx/", f"{DEPLOY / 'nginx'}/")
                .replace("listen 80;", "listen 127.0.0.1:1;").replace("listen [::]:80;", "")
                .replace("listen 443 ssl http2;", "listen 127.0.0.1:2 ssl http2;")
                .replace("listen [::]:443 ssl http2;", ""))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_gunicorn_configuration_loads() -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    env = dict(os.environ, MEDVAULT_GUNICORN_BIND="127.0.0.1:18999")
    result = subprocess.run(
        [str(gunicorn), "--check-config", "-c", str(DEPLOY / "gunicorn.conf.py"),
         "medvault.web.wsgi"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_systemd_units_run_medvault_commands_that_exist() -> None:
    from django.core.management import get_commands

    commands = get_commands()
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {
        "medvault-app@.service", "medvault-worker.service", "medvault-dicom.service"}
    for unit in units:
        text = unit.read_text()
        assert "EnvironmentFile=/etc/medvault/medvault.env" in text
        assert "[Install]" in text and "Restart=always" in text
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        if "/medvault " in exec_start:
            assert exec_start.split("/medvault ", 1)[1].split()[0] in commands, exec_start
