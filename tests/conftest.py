"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# ../shared/data beside the checkout: real images, never committed. Read-only in CI.
# MEDVAULT_TEST_SHARED_DATA points elsewhere (e.g. a missing folder, to run as a fresh clone).
SHARED_DATA = Path(
    os.environ.get("MEDVAULT_TEST_SHARED_DATA", "")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
# Files of ../shared/data/dicom that are byte for byte pydicom's bundled test files: a fresh
# clone (no ../shared) runs the tests that need only these on pydicom's copies.
BUNDLED_DICOM = {
    "single_ct/CT_small.dcm": "CT_small.dcm",
    "single_mr/MR_small.dcm": "MR_small.dcm",
    "transfer_syntax/MR_small_RLE.dcm": "MR_small_RLE.dcm",
    "transfer_syntax/MR_small_bigendian.dcm": "MR_small_bigendian.dcm",
    "transfer_syntax/MR_small_implicit.dcm": "MR_small_implicit.dcm",
    "transfer_syntax/MR_small_jp2klossless.dcm": "MR_small_jp2klossless.dcm",
    "transfer_syntax/MR_small_jpeg_ls_lossless.dcm": "MR_small_jpeg_ls_lossless.dcm",
    "transfer_syntax/image_dfl.dcm": "image_dfl.dcm",
    "invalid/MR_truncated.dcm": "MR_truncated.dcm",
    "invalid/no_meta.dcm": "no_meta.dcm",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dicom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the DICOM samples in ``BUNDLED_DICOM`` (and the DICOMDIR series of
    ``series_dicomdir/``): ../shared/data when present, else a folder of the same layout
    made from pydicom's bundled test files, which are the same files."""
    if (SHARED_DATA / "dicom").is_dir():
        return SHARED_DATA
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("bundled_data")
    for relative, name in BUNDLED_DICOM.items():
        source = get_testdata_file(name)
        if source is None:
            pytest.skip(f"neither ../shared/data nor pydicom's bundled files hold {name}")
        target = root / "dicom" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    dicomdir = get_testdata_file("DICOMDIR")
    if dicomdir is not None:
        source_dir = Path(dicomdir).parent
        for name in ("DICOMDIR", "77654033", "98892001", "98892003"):
            item = source_dir / name
            target = root / "dicom" / "series_dicomdir" / name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item, target)
    return root


@pytest.fixture
def blob_dir(settings, tmp_path: Path) -> Path:
    """Point the blob store at an empty temporary directory for one test."""
    path = tmp_path / "blobs"
    settings.MEDVAULT_BLOB_DIR = path
    return path


@pytest.fixture
def compression_inline(settings) -> None:
    """Compress inside ingest, for a test that checks the compressed blob at once.

    The suite otherwise runs the production default (deferred: the worker compresses later);
    a test that needs the compressed blob asks for this fixture or runs the worker.
    """
    settings.MEDVAULT_COMPRESSION_DEFERRED = False
