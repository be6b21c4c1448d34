"""Every file of ``pydicom.data.get_testdata_files()`` present offline, each in a fresh
archive (the test files reuse UIDs): what pydicom decodes is stored and comes back
pixel-exact through ``medvault export`` (as stored and decompressed), WADO-RS (the default
and ``transfer-syntax=*``), C-GET and C-MOVE; everything else is refused with a reason in
words. Needs no ../shared/data.
"""

from __future__ import annotations

import io
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicomweb.conftest import api_user_make
from dimse.conftest import free_port
from django.core.management import call_command
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from medvault.archive.ingest import instance_store
from medvault.archive.outcomes import StoreStatus
from medvault.core.dicom.json import dataset_to_json
from medvault.core.dicom.multipart import multipart_parse

_ROOT = Path(pydicom.data.__file__).resolve().parent  # get_testdata_files returns resolved paths
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Files pydicom reads leniently but that are broken: pydicom stops quietly where they end.
BROKEN = {"rtplan_truncated.dcm": "truncated"}
# Words of Python exceptions that must never reach a user.
LEAKS = ("Traceback", "invalid literal", "object has no attribute", "Error(", "plugins:", "errno")


def _files() -> list[str]:
    files = [p for p in get_testdata_files() if os.path.isfile(p)]
    return sorted(str(Path(p).relative_to(_ROOT)) for p in files)


def _decoded(path: Path) -> tuple[Dataset | None, np.ndarray | None, str]:
    """pydicom's own verdict, independent of MedVault's parser: the data set and its pixels
    when pydicom reads the file as Part 10 with its UIDs and decodes its pixels; else why not."""
    if path.name in BROKEN:
        return None, None, BROKEN[path.name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if (
                str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
                == "1.2.840.10008.1.3.10"
            ):
                return None, None, "DICOMDIR"
            if any(not str(ds.get(k, "") or "").strip() for k in UIDS):
                return None, None, "UID missing"
            if not any(k in ds for k in PIXEL_KEYWORDS):
                if "Image Storage" in UID(str(ds.SOPClassUID)).name:
                    return None, None, "image without pixels"
                return ds, None, ""
            return ds, ds.pixel_array, ""
    except Exception as exc:  # noqa: BLE001  (whatever pydicom raises: it does not decode it)
        return None, None, type(exc).__name__


def _pixels(data: bytes) -> np.ndarray | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        return ds.pixel_array if any(k in ds for k in PIXEL_KEYWORDS) else None


def _same(data: bytes | Dataset, original: Dataset, pixels: np.ndarray | None, where: str) -> None:
    ds = data if isinstance(data, Dataset) else pydicom.dcmread(io.BytesIO(data))
    assert ds.SOPInstanceUID == original.SOPInstanceUID, where
    if pixels is None:
        # No pixels: the attributes are what came in (encoding aside).
        assert _json(ds) == _json(original), where
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ds.pixel_array
    assert got.shape == pixels.shape and np.array_equal(got, pixels), where


def _json(ds: Dataset) -> dict[str, Any]:
    return {
        k: {kk: vv for kk, vv in v.items() if kk != "vr"} for k, v in dataset_to_json(ds).items()
    }


@pytest.fixture(scope="module")
def destination() -> Any:
    """A storage SCP for C-MOVE (AE TESTDEST), shared by the module; no database."""
    received: list[tuple[str, Dataset]] = []
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with lock:
            received.append((str(event.context.transfer_syntax), ds))
        return 0x0000

    ae = AE(ae_title="TESTDEST")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield {"port": port, "received": received}
    finally:
        server.shutdown()


@pytest.fixture
def archive(transactional_db: Any, blob_dir: Any, settings: Any, destination: Any) -> Any:
    """A fresh archive (database and blob store) with its DICOM server and an administrator
    (sees every study) with an API token."""
    from medvault.dimse.models import RemoteAE
    from medvault.dimse.server import dicomserver_start

    settings.MEDVAULT_AUTO_ANALYSE = False
    # The API user's password is hashed once per file: the fast hasher keeps the walk short.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    RemoteAE.objects.create(ae_title="TESTSCU", host="127.0.0.1", port=free_port())
    RemoteAE.objects.create(ae_title="TESTDEST", host="127.0.0.1", port=destination["port"])
    port = free_port()
    server = dicomserver_start(
        host="127.0.0.1", port=port, ae_title="MEDVAULT", accept_unknown=False
    )
    destination["received"].clear()
    try:
        yield {"port": port, "user": api_user_make("walker", "administrator", None)}
    finally:
        server.shutdown()


def _wado(client: Any, user: Any, instance: Any, accept: str) -> bytes:
    study = instance.series.study.study_instance_uid
    url = (
        f"/dicomweb/studies/{study}/series/{instance.series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    response = client.get(url, HTTP_ACCEPT=accept, **user.headers)
    assert response.status_code == 200, (accept, response.status_code)
    body = b"".join(response.streaming_content)
    (part,) = multipart_parse(body, response["Content-Type"])
    return part.content


def _c_get(port: int, instance: Any, proposed: list[str]) -> list[tuple[str, Dataset]]:
    received: list[tuple[str, Dataset]] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((str(event.context.transfer_syntax), ds))
        return 0x0000

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    sop_class = instance.sop_class_uid
    # One context per syntax, so that each is accepted or refused on its own.
    for syntax in proposed:
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="MEDVAULT",
        ext_neg=[build_role(sop_class, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = instance.series.study.study_instance_uid
    q.SeriesInstanceUID = instance.series.series_instance_uid
    q.SOPInstanceUID = instance.sop_instance_uid
    statuses = [s.Status for s, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == 0x0000, statuses
    return received


def _c_move(port: int, instance: Any) -> None:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVAULT")
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = instance.series.study.study_instance_uid
    responses = list(assoc.send_c_move(q, "TESTDEST", StudyRootQueryRetrieveInformationModelMove))
    assoc.release()
    assert responses[-1][0].Status == 0x0000, responses[-1][0]


_VERDICTS = {name: _decoded(_ROOT / name)[2] for name in _files()}
DECODED = [name for name, why_not in _VERDICTS.items() if not why_not]
NOT_DECODED = [name for name, why_not in _VERDICTS.items() if why_not]


@pytest.mark.django_db
@pytest.mark.parametrize("name", NOT_DECODED)
def test_what_pydicom_does_not_decode_is_refused_in_words(blob_dir, name):
    result = instance_store(data=(_ROOT / name).read_bytes(), source="cli", path=name)
    assert result.status == StoreStatus.REJECTED, (
        f"pydicom does not decode it ({_VERDICTS[name]}) but it was {result.status}"
    )
    assert result.reason and len(result.reason) > 15
    assert not any(leak.lower() in result.reason.lower() for leak in LEAKS), result.reason


def test_the_walk_covers_the_bundled_files():
    # pydicom 3.0.2 bundles these offline; more appear when pydicom-data is installed.
    assert len(DECODED) >= 80 and len(NOT_DECODED) >= 60
    assert {
        "rtplan.dcm",
        "waveform_ecg.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "MR_small_padded.dcm",
        "liver_1frame.dcm",
    } <= {Path(n).name for n in DECODED}


@pytest.mark.slow
@pytest.mark.parametrize("name", DECODED)
def test_what_pydicom_decodes_comes_back_pixel_exact(archive, destination, client, tmp_path, name):
    path = _ROOT / name
    data = path.read_bytes()
    original, pixels, _ = _decoded(path)
    result = instance_store(data=data, source="cli", path=name)
    assert result.status == StoreStatus.STORED, result.reason
    instance = result.instance

    # medvault export, as stored and decompressed: DEST/<Study>/<Series>/<SOP>.dcm.
    for folder, extra in (("stored", []), ("native", ["--transfer-syntax", EXPLICIT_LE])):
        dest = tmp_path / folder
        out = io.StringIO()
        call_command(
            "export", "--instance", instance.sop_instance_uid, *extra, str(dest), stdout=out
        )
        assert json.loads(out.getvalue())["files"] == 1
        (file,) = [p for p in dest.rglob("*.dcm")]
        exported = file.read_bytes()
        if extra:
            assert pydicom.dcmread(io.BytesIO(exported)).file_meta.TransferSyntaxUID == EXPLICIT_LE
        _same(exported, original, pixels, f"export {folder}")

    # WADO-RS: the default (explicit VR little endian, decompressed) and as stored.
    user = archive["user"]
    default = _wado(client, user, instance, 'multipart/related; type="application/dicom"')
    assert pydicom.dcmread(io.BytesIO(default)).file_meta.TransferSyntaxUID == EXPLICIT_LE
    _same(default, original, pixels, "WADO-RS default")
    stored = _wado(
        client, user, instance, 'multipart/related; type="application/dicom"; transfer-syntax=*'
    )
    _same(stored, original, pixels, "WADO-RS *")

    # C-GET: the peer proposes the stored syntax and the native ones; the stored one comes.
    proposed = [instance.transfer_syntax_uid, EXPLICIT_LE, "1.2.840.10008.1.2"]
    if instance.transfer_syntax_uid in (
        "1.2.840.10008.1.2.4.110",
        "1.2.840.10008.1.2.4.111",
        "1.2.840.10008.1.2.4.112",
    ):
        proposed = proposed[1:]
    ((syntax, got),) = _c_get(archive["port"], instance, list(dict.fromkeys(proposed)))
    assert syntax == proposed[0]
    _same(got, original, pixels, "C-GET")

    # C-MOVE to the module's storage SCP.
    _c_move(archive["port"], instance)
    ((syntax, got),) = destination["received"]
    _same(got, original, pixels, f"C-MOVE in {syntax}")
