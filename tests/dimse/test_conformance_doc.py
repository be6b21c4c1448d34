"""docs/conformance.md lists exactly what the DICOM server accepts (keeps the statement true)."""

from __future__ import annotations

import re
from pathlib import Path

from pynetdicom.presentation import AllStoragePresentationContexts

from medvault.dimse.server import STORAGE_TRANSFER_SYNTAXES

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def _table_uids(section: str) -> list[str]:
    text = DOC.read_text()
    start = text.index(section)
    return re.findall(r"^\| ([0-9.]+) \|", text[start:].split("\n## ")[0], flags=re.M)


def test_every_storage_sop_class_is_listed() -> None:
    listed = _table_uids("## Appendix A. Storage SOP classes")
    assert sorted(listed) == sorted(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)


def test_every_transfer_syntax_is_listed_in_the_order_of_preference() -> None:
    assert _table_uids("## Appendix B. Transfer syntaxes") == [str(ts) for ts in STORAGE_TRANSFER_SYNTAXES]
