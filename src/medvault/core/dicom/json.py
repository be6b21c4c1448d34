"""DICOM JSON (PS3.18 F.2) for the index: everything but bulk data.

Bulk data (Pixel Data and other binary values over ``BULK_THRESHOLD`` bytes) is replaced
by a ``BulkDataURI`` that is relative to the instance, ``bulkdata/<tag>`` (e.g.
``bulkdata/7FE00010``); DICOMweb prefixes it with the instance's URL.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

BULK_THRESHOLD = 1024
# Tags that say nothing about the content: trailing padding and the group lengths.
_IGNORED_TAGS = {0xFFFCFFFC}


def _bulk_uri(element: DataElement) -> str:
    return f"bulkdata/{element.tag:08X}"


def _clean(value: Any) -> Any:
    # PostgreSQL's jsonb refuses U+0000, and trailing NULs are padding in DICOM anyway.
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


def dataset_to_json(ds: Dataset) -> dict[str, Any]:
    """Return the dataset (without file meta) as DICOM JSON without bulk data."""
    body = Dataset()
    for element in ds:
        if element.tag in _IGNORED_TAGS or element.tag.group == 0x0002:
            continue
        if element.tag.element == 0x0000:  # group length: depends on the encoding
            continue
        body.add(element)
    result: dict[str, Any] = _clean(
        body.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=_bulk_uri)
    )
    return result


def canonical_sha256(metadata: dict[str, Any]) -> str:
    """SHA-256 of the metadata in a canonical form (sorted keys, no VR).

    The VR is left out because implicit-VR input gets its VRs from the dictionary while
    explicit-VR input carries them, so the same instance would otherwise hash differently.
    """

    def strip_vr(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip_vr(v) for k, v in node.items() if k != "vr"}
        if isinstance(node, list):
            return [strip_vr(item) for item in node]
        return node

    text = json.dumps(strip_vr(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
