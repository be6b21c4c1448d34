"""DCMTK (Debian's ``dcmtk``, a peer nobody here wrote) against MedVault's DICOM server:
``storescu`` with compressed proposals, ``getscu`` and ``movescu`` into ``storescp``, and
``echoscu`` with a wrong called AE title. Bit-exact checks on both sides.

pydicom's bundled test files; no ../shared/data needed. Skips when DCMTK is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dimse.conftest import eventually, free_port
from pydicom.data import get_testdata_file

from medvault.archive.models import Instance
from medvault.archive.selectors import instance_pixels

pytestmark = pytest.mark.skipif(
    shutil.which("storescu") is None, reason="DCMTK is not installed (apt-get install dcmtk)"
)

JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


def _bundled(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files here")
    return Path(path)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def medvault(transactional_db: Any, blob_dir: Any, settings: Any) -> Any:
    """MedVault's SCP (AE MEDVAULT); known peers STORESCU, GETSCU, MOVESCU, ECHOSCU and the
    move destination STORESCP (a port of its own)."""
    from medvault.dimse.models import RemoteAE
    from medvault.dimse.server import dicomserver_start

    settings.MEDVAULT_AUTO_ANALYSE = False
    settings.MEDVAULT_COMPRESSION = "jpegls"
    for title in ("STORESCU", "GETSCU", "MOVESCU", "ECHOSCU"):
        RemoteAE.objects.create(ae_title=title, host="127.0.0.1", port=free_port())
    destination = RemoteAE.objects.create(ae_title="STORESCP", host="127.0.0.1", port=free_port())
    port = free_port()
    server = dicomserver_start(
        host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False
    )
    try:
        yield {"port": port, "destination_port": destination.port}
    finally:
        server.shutdown()


def _storescu(port: int, proposal: str, *files: Path) -> subprocess.CompletedProcess[str]:
    args = ["storescu", "-aet", "STORESCU", "-aec", "MEDVAULT", "-nh"]
    if proposal:
        args.append(proposal)
    return _run(*args, "127.0.0.1", port, *files)


def _pixels_equal(received: Path | pydicom.Dataset, original: Path) -> None:
    ds = received if isinstance(received, pydicom.Dataset) else pydicom.dcmread(received)
    reference = pydicom.dcmread(original)
    assert np.array_equal(ds.pixel_array, reference.pixel_array)
    for keyword in ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "Rows", "Columns"):
        assert ds.get(keyword) == reference.get(keyword), keyword


@pytest.mark.parametrize(
    ("proposal", "name", "received_syntax"),
    [
        ("-xs", "MR_small.dcm", EXPLICIT_LE),
        ("-xt", "MR_small_jpeg_ls_lossless.dcm", JPEG_LS),
        ("-xv", "MR_small_jp2klossless.dcm", J2K_LOSSLESS),
        ("-xi", "CT_small.dcm", IMPLICIT_LE),
    ],
)
def test_storescu_proposals_arrive_bit_exact(medvault, proposal, name, received_syntax):
    original = _bundled(name)
    done = _storescu(medvault["port"], proposal, original)
    assert done.returncode == 0, done.stderr
    instance = eventually(lambda: Instance.objects.first(), seconds=5)
    assert instance is not None
    assert instance.received_transfer_syntax_uid == received_syntax
    stored = instance_pixels(instance=instance, frame=None)
    assert np.array_equal(stored.reshape(-1), pydicom.dcmread(original).pixel_array.reshape(-1))


def _store_for_retrieval(medvault: dict[str, Any], name: str) -> Instance:
    done = _storescu(medvault["port"], "", _bundled(name))
    assert done.returncode == 0, done.stderr
    instance = eventually(lambda: Instance.objects.first(), seconds=5)
    assert instance is not None
    return instance


@pytest.mark.parametrize(
    ("preference", "expected_syntax"),
    [
        ("+xt", JPEG_LS),  # the stored syntax, accepted: sent as stored
        ("+xv", J2K_LOSSLESS),  # only another lossless codec besides native: transcoded
        ("+xe", EXPLICIT_LE),  # uncompressed only: decompressed
    ],
)
def test_getscu_receives_a_syntax_it_proposed(medvault, tmp_path, preference, expected_syntax, compression_inline):
    instance = _store_for_retrieval(medvault, "MR_small.dcm")
    assert instance.transfer_syntax_uid == JPEG_LS
    out = tmp_path / "get"
    out.mkdir()
    done = _run(
        "getscu",
        "-v",
        "-aet",
        "GETSCU",
        "-aec",
        "MEDVAULT",
        *([preference] if preference else []),
        "+B",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={instance.series.study.study_instance_uid}",
        "127.0.0.1",
        medvault["port"],
    )
    assert done.returncode == 0, done.stderr
    received_files = list(out.iterdir())
    assert len(received_files) == 1, done.stdout + done.stderr
    (received,) = received_files
    ds = pydicom.dcmread(received)
    assert ds.file_meta.TransferSyntaxUID == expected_syntax, done.stdout + done.stderr
    _pixels_equal(ds, _bundled("MR_small.dcm"))


def test_movescu_into_storescp_sends_the_stored_syntax(medvault, tmp_path, compression_inline):
    instance = _store_for_retrieval(medvault, "MR_small.dcm")
    out = tmp_path / "moved"
    out.mkdir()
    receiver = subprocess.Popen(
        [
            "storescp",
            "-aet",
            "STORESCP",
            "+xt",
            "+B",
            "-od",
            str(out),
            str(medvault["destination_port"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ready = eventually(
            lambda: (
                _run(
                    "echoscu", "-aec", "STORESCP", "127.0.0.1", medvault["destination_port"]
                ).returncode
                == 0
            ),
            seconds=10,
        )
        assert ready, "storescp did not start"
        done = _run(
            "movescu",
            "-aet",
            "MOVESCU",
            "-aec",
            "MEDVAULT",
            "-aem",
            "STORESCP",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={instance.series.study.study_instance_uid}",
            "127.0.0.1",
            medvault["port"],
        )
        assert done.returncode == 0, done.stderr
        files = eventually(lambda: [p for p in out.iterdir() if p.is_file()], seconds=10)
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    assert files, "storescp received nothing"
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == JPEG_LS
    _pixels_equal(ds, _bundled("MR_small.dcm"))


def test_wrong_called_ae_title_is_rejected(medvault):
    assert (
        _run(
            "echoscu", "-aet", "ECHOSCU", "-aec", "MEDVAULT", "127.0.0.1", medvault["port"]
        ).returncode
        == 0
    )
    wrong = _run("echoscu", "-aet", "ECHOSCU", "-aec", "WRONGAE", "127.0.0.1", medvault["port"])
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stderr + wrong.stdout
