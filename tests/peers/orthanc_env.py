"""Run MedVault (gunicorn + DICOM SCP) and Orthanc side by side, for peer tests and the
benchmark. Meant to run inside a private network namespace (``unshare --net``, loopback up):
Orthanc 1.10 cannot bind one address, so it must not see the machine's other interfaces.

Every process started here is stopped by its PID in :meth:`Peers.stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
# Debian's orthanc-gdcm: JPEG 2000 decoding and transcoding. Only the disk benchmark loads it
# (Peers(orthanc_gdcm=True)); no test depends on it.
GDCM_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancGdcm.so")

MV_HTTP, MV_DICOM, OR_HTTP, OR_DICOM = 8000, 11112, 8042, 4242


def orthanc_available() -> str | None:
    """None when the Orthanc peer can run here, else the reason it cannot."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        return "cannot create a network namespace (unshare --net): " + probe.stderr.decode()[:200]
    return None


def reexec_in_private_network() -> None:
    """Run this script again inside a new network namespace with only loopback up.

    For the benchmarks that run Orthanc (which cannot bind one address): the first call
    re-executes ``sys.argv`` under ``unshare --net`` and exits with its status; inside, where
    ``MV_BENCH_NETNS=1``, it returns. Exits with the reason when that cannot be done here.
    """
    if os.environ.get("MV_BENCH_NETNS") == "1":
        return
    reason = orthanc_available()
    if reason:
        sys.exit(reason)
    env = dict(os.environ, MV_BENCH_NETNS="1")
    env.pop("DATABASE_URL", None)
    cmd = " ".join(f"'{a}'" for a in [sys.executable, *sys.argv])
    sys.exit(subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {cmd}"], env=env).returncode)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not open port {port} within {timeout} s")


class Peers:
    def __init__(self, work: Path, *, gunicorn_workers: int = 2, orthanc_compression: bool = False,
                 medvault_env: dict[str, str] | None = None, known_aes: tuple[str, ...] = (),
                 orthanc_ingest_transcoding: str = "", orthanc_gdcm: bool = False) -> None:
        """``orthanc_ingest_transcoding``: a transfer syntax UID for Orthanc's
        ``IngestTranscoding`` (empty: store as received); ``orthanc_gdcm``: load the GDCM
        plugin (needed to transcode to JPEG 2000)."""
        self.work = work
        self.known_aes = known_aes
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gunicorn_workers = gunicorn_workers
        self.orthanc_compression = orthanc_compression
        self.orthanc_ingest_transcoding = orthanc_ingest_transcoding
        self.orthanc_gdcm = orthanc_gdcm
        self.env = dict(os.environ)
        self.env.update({
            "MEDVAULT_DATA_DIR": str(work / "medvault"),
            "DATABASE_URL": f"sqlite:///{work / 'medvault' / 'medvault.sqlite3'}",
            "MEDVAULT_AUTO_ANALYSE": "false",
            "MEDVAULT_DICOM_PORT": str(MV_DICOM),
            "MEDVAULT_DICOM_HOST": "127.0.0.1",
            "MEDVAULT_DICOM_AE_TITLE": "MEDVAULT",
            "MEDVAULT_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "medvault.web.settings",
            **(medvault_env or {}),
        })
        self.token = ""
        self.mv = f"http://127.0.0.1:{MV_HTTP}"
        self.orthanc = f"http://127.0.0.1:{OR_HTTP}"

    # --- set-up ------------------------------------------------------------------------

    def setup_medvault(self) -> None:
        """Migrate a fresh SQLite archive; create the peer user, its token and the Orthanc AE."""
        (self.work / "medvault").mkdir(parents=True, exist_ok=True)
        script = (
            "from django.core.management import call_command\n"
            "call_command('migrate', verbosity=0)\n"
            "from django.contrib.auth.models import Group\n"
            "from medvault.accounts.models import User\n"
            "from medvault.accounts.tokens import token_create\n"
            "from medvault.dimse.models import RemoteAE\n"
            "g = Group.objects.create(name='peers')\n"
            "u = User.objects.create_user(username='orthanc', password='x-Unused-Passw0rd', role='clinician',"
            " status='approved')\n"
            "u.groups.add(g)\n"
            f"RemoteAE.objects.create(ae_title='ORTHANC', host='127.0.0.1', port={OR_DICOM}, group=g)\n"
            + "".join(
                f"RemoteAE.objects.create(ae_title={t!r}, host='127.0.0.1', port=104, group=g)\n"
                for t in self.known_aes
            )
            + "print(token_create(user=u, name='peer')[1])\n"
        )
        out = subprocess.run([str(BIN / "python"), "-c", "import django; django.setup()\n" + script],
                             env=self.env, cwd=ROOT, capture_output=True, check=True)
        self.token = out.stdout.decode().strip().splitlines()[-1]

    def start_medvault(self) -> None:
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "medvault.web.wsgi", "--bind", f"127.0.0.1:{MV_HTTP}",
             "--workers", str(self.gunicorn_workers), "--timeout", "300", "--log-level", "warning"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.work / "gunicorn.log", "wb"),
        )
        self.procs.append(web)
        scp = subprocess.Popen(
            [str(BIN / "medvault"), "dicomserver", "--port", str(MV_DICOM)],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.work / "dicomserver.log", "wb"),
        )
        self.procs.append(scp)
        _wait_port(MV_HTTP, web, "gunicorn")
        _wait_port(MV_DICOM, scp, "medvault dicomserver")

    def start_orthanc(self) -> None:
        storage = self.work / "orthanc"
        storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "peer",
            "StorageDirectory": str(storage / "db"),
            "IndexDirectory": str(storage / "db"),
            "StorageCompression": self.orthanc_compression,
            "HttpPort": OR_HTTP,
            "DicomPort": OR_DICOM,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": True,
            "AuthenticationEnabled": False,
            "DicomModalities": {"medvault": ["MEDVAULT", "127.0.0.1", MV_DICOM]},
            "DicomScuTimeout": 60,
            "HttpTimeout": 120,
            "ConcurrentJobs": 2,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {
                "Enable": True, "Root": "/dicom-web/",
                "Servers": {"medvault": {"Url": f"{self.mv}/dicomweb/", "Username": "orthanc",
                                         "Password": self.token}},
            },
        }
        if self.orthanc_gdcm:
            if not GDCM_PLUGIN.exists():
                raise RuntimeError(f"{GDCM_PLUGIN} is missing (apt-get install orthanc-gdcm)")
            config["Plugins"].append(str(GDCM_PLUGIN))
        if self.orthanc_ingest_transcoding:
            config["IngestTranscoding"] = self.orthanc_ingest_transcoding
        path = storage / "orthanc.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([ORTHANC, str(path)], cwd=storage, stdout=subprocess.DEVNULL,
                                stderr=open(self.work / "orthanc.log", "wb"))
        self.procs.append(proc)
        _wait_port(OR_HTTP, proc, "Orthanc")
        _wait_port(OR_DICOM, proc, "Orthanc DICOM")

    def start(self) -> Peers:
        try:
            self.setup_medvault()
            self.start_medvault()
            self.start_orthanc()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()

    def __enter__(self) -> Peers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- helpers -----------------------------------------------------------------------

    @property
    def mv_auth(self) -> tuple[str, str]:
        return ("orthanc", self.token)

    def orthanc_call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.orthanc + path, timeout=300, **kwargs)
        response.raise_for_status()
        return (
            response.json()
            if response.content and "json" in response.headers.get("Content-Type", "")
            else response.content
        )

    def orthanc_study_id(self, study_uid: str) -> str | None:
        found = self.orthanc_call("POST", "/tools/lookup", data=study_uid)
        ids = [f["ID"] for f in found if f.get("Type") == "Study"]
        return ids[0] if ids else None

    def orthanc_study_files(self, study_uid: str) -> list[bytes]:
        study_id = self.orthanc_study_id(study_uid)
        if study_id is None:
            return []
        instances = self.orthanc_call("GET", f"/studies/{study_id}/instances")
        return [self.orthanc_call("GET", f"/instances/{i['ID']}/file") for i in instances]
