"""The index values of result rows as DICOM JSON elements (QIDO-RS answers, C-FIND responses)."""

from __future__ import annotations

from typing import Any

from medvault.archive.query.attributes import Attribute, Level, field_path


def value_of(obj: Any, level: Level, attribute: Attribute) -> Any:
    """The index value of ``attribute`` for a row of ``level`` (None if not reachable)."""
    path = field_path(level, attribute)
    if path is None:
        return None
    value: Any = obj
    for name in path.split("__"):
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def json_element(attribute: Attribute, value: Any) -> dict[str, Any]:
    """One DICOM JSON element (PS3.18 F.2.2) for an index value."""
    element: dict[str, Any] = {"vr": attribute.vr}
    if value is None or value == "":
        return element
    kind = attribute.kind
    if kind == "pn":
        element["Value"] = [{"Alphabetic": str(value)}]
    elif kind == "date":
        element["Value"] = [value.strftime("%Y%m%d") if hasattr(value, "strftime") else str(value)]
    elif kind in ("int", "count"):
        element["Value"] = [int(value)]
    elif kind == "modalities":
        element["Value"] = [m for m in str(value).split("\\") if m]
    else:
        element["Value"] = [str(value)]
    return element
