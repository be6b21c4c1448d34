"""DICOM values as index fields: text cut to the column, person names, dates, integers.

Every function takes what a data set holds (possibly absent, multi-valued or malformed) and
returns what the index column can hold; nothing here raises on bad input.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydicom.dataset import Dataset


def text_value(ds: Dataset, keyword: str, limit: int) -> str:
    """The element as text (multiple values joined by ``\\``), without NULs, at most ``limit``."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()[:limit]


def person_name(value: Any) -> str:
    # Trailing empty components carry no meaning: "Doe^John^^^" == "Doe^John", "^^^^" == "".
    text = str(value or "").replace("\x00", "").strip()
    groups = [group.rstrip("^ ") for group in text.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def date_value(value: Any) -> dt.date | None:
    """A DA value (``YYYYMMDD``, anything after it ignored) or ``None``."""
    text = str(value or "").strip()
    if len(text) >= 8 and text[:8].isdigit():
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def int_value(value: Any) -> int | None:
    """An IS/US value that fits a 32-bit signed column, or ``None``."""
    try:
        number = int(str(value).strip()) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if number is not None and abs(number) > 2**31 - 1:
        return None
    return number
