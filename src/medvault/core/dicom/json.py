"""DICOM JSON (PS3.18 F.2) for the index: everything but bulk data.

Bulk data (Pixel Data and other binary values over ``BULK_THRESHOLD`` bytes) is replaced
by a ``BulkDataURI`` that is relative to the instance, ``bulkdata/<tag>`` (e.g.
``bulkdata/7FE00010``); DICOMweb prefixes it with the instance's URL.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from medvault.core.dicom.structure import raw_vr

BULK_THRESHOLD = 1024
# Tags that say nothing about the content: trailing padding and the group lengths.
_IGNORED_TAGS = {0xFFFCFFFC}


def _bulk_uri(element: DataElement) -> str:
    return f"bulkdata/{element.tag:08X}"


def _clean(value: Any) -> Any:
    # PostgreSQL's jsonb refuses U+0000, and trailing NULs are padding in DICOM anyway.
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


# Most header elements are byte-identical across the instances of a series, and pydicom's
# per-element conversion dominates ingest time; so conversions of short non-sequence elements
# whose VR is known without converting them (explicit, or a public implicit-VR tag's one
# dictionary VR) are memoised by (tag, VR, raw bytes, byte order, character set, implicit).
_MEMO: dict[tuple[Any, ...], dict[str, Any]] = {}
_MEMO_MAX_ENTRIES = 50_000
_MEMO_MAX_VALUE_BYTES = 256
_NOT_MEMOISED_VRS = {"SQ", "UN", "OB", "OW", "OD", "OF", "OL", "OV"}


def _element_json(element: DataElement) -> dict[str, Any]:
    converted: dict[str, Any] = element.to_json_dict(_bulk_uri, BULK_THRESHOLD)
    values = converted.get("Value")
    if values and element.VR != "SQ":
        converted["Value"] = _clean(values)
    elif values:
        converted["Value"] = [_clean(item) for item in values]
    return converted


def dataset_to_json(ds: Dataset) -> dict[str, Any]:
    """Return the dataset (without file meta) as DICOM JSON without bulk data."""
    result: dict[str, Any] = {}
    charset = str(ds.get("SpecificCharacterSet", ""))
    for tag, raw in list(ds.items()):
        if tag in _IGNORED_TAGS or tag.group == 0x0002 or tag.element == 0x0000:
            # File meta, trailing padding and group lengths depend on the encoding.
            continue
        key = None
        vr = raw_vr(raw) if isinstance(raw, RawDataElement) else None
        if (
            isinstance(raw, RawDataElement)
            and vr is not None
            and vr not in _NOT_MEMOISED_VRS
            and raw.value is not None
            and len(raw.value) <= _MEMO_MAX_VALUE_BYTES
        ):
            key = (int(tag), vr, raw.value, raw.is_little_endian, charset, raw.is_implicit_VR)
            cached = _MEMO.get(key)
            if cached is not None:
                result[f"{tag:08X}"] = {
                    k: (list(v) if isinstance(v, list) else v) for k, v in cached.items()
                }
                continue
        converted = _element_json(ds[tag])
        if key is not None:
            if len(_MEMO) >= _MEMO_MAX_ENTRIES:
                _MEMO.clear()
            _MEMO[key] = {k: (list(v) if isinstance(v, list) else v) for k, v in converted.items()}
        result[f"{tag:08X}"] = converted
    return result


# In a DICOM JSON text dumped with sorted keys, "vr" is the last key of every element
# object (upper case sorts before lower case: BulkDataURI, InlineBinary, Value, vr), and a
# quote inside a string value is escaped, so this matches exactly the VR members.
_VR_MEMBER = re.compile(r',?"vr":"[^"\\]*"')


def canonical_sha256(metadata: dict[str, Any]) -> str:
    """SHA-256 of the metadata in a canonical form (sorted keys, no VR).

    The VR is left out because implicit-VR input gets its VRs from the dictionary while
    explicit-VR input carries them, so the same instance would otherwise hash differently.
    The VR members are cut from the dumped text rather than from a copy of the tree: the
    same bytes as dumping a VR-less copy, at a third of the cost (tests/core/dicom).
    """
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(_VR_MEMBER.sub("", text).encode("ascii")).hexdigest()
