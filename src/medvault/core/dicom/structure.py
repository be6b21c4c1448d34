"""Limits on the shape of a data set: how deep sequences nest and how many elements it has.

pydicom reads, writes and converts sequences recursively, so a data set nested a few hundred
levels deep exhausts Python's stack (``RecursionError``) wherever it is touched next. These
checks walk the data set (or its DICOM JSON) with an explicit stack, never recursively, and
name the limit a data set exceeds so the sender is told why it was refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

# A raw element whose VR (explicit, or the dictionary's for a public implicit-VR tag) can
# never hold items is counted without converting it. SQ and UN (an undefined-length UN is
# read as a sequence), private and unknown implicit-VR tags (None) are converted.
_MAY_NEST = {None, "SQ", "UN"}
_UNDEFINED_LENGTH = 0xFFFFFFFF


@lru_cache(maxsize=4096)
def implicit_vr(tag: int) -> str | None:
    """The VR an implicit-VR element of ``tag`` is read with, when the dictionary alone says
    it: a public tag with one VR. ``None`` for private and unknown tags and for ambiguous VRs
    (``US or SS``, which depend on other elements), whose reading needs the data set."""
    if (tag >> 16) % 2 == 1:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " or " in vr else vr


def raw_vr(raw: RawDataElement) -> str | None:
    """The VR ``raw`` will have once converted, as far as known without converting it."""
    if raw.VR is not None:
        return str(raw.VR)
    if raw.length == _UNDEFINED_LENGTH:
        return None
    return implicit_vr(int(raw.tag))

DEFAULT_MAX_DEPTH = 32  # levels of sequence nesting; real SR trees and functional groups use < 16
# All elements, nested ones included (large enhanced multi-frames hold ~100k).
DEFAULT_MAX_ELEMENTS = 500_000

NESTING_REASON = (
    "sequences are nested more than {limit} levels deep (MEDVAULT_DICOM_MAX_DEPTH); "
    "nothing of this instance was stored"
)
ELEMENTS_REASON = (
    "the data set has more than {limit} elements (MEDVAULT_DICOM_MAX_ELEMENTS); "
    "nothing of this instance was stored"
)


class StructureTooLarge(ValueError):
    """A data set over a nesting or element-count limit; ``str()`` is the reason in words."""


def dataset_structure_check(ds: Dataset, *, max_depth: int, max_elements: int) -> None:
    """Raise ``StructureTooLarge`` when ``ds`` nests deeper than ``max_depth`` sequence levels
    or holds more than ``max_elements`` elements."""
    count = 0
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        dataset, depth = stack.pop()
        # The raw elements, not ``iter(dataset)``: iterating a Dataset converts every raw
        # element (most of the cost of ingesting a plain image); only those that may be
        # sequences are converted here.
        for tag, raw in list(dataset.items()):
            count += 1
            if count > max_elements:
                raise StructureTooLarge(ELEMENTS_REASON.format(limit=max_elements))
            if isinstance(raw, RawDataElement) and raw_vr(raw) not in _MAY_NEST:
                continue
            element = dataset[tag]
            if element.VR == "SQ" and element.value:
                if depth + 1 > max_depth:
                    raise StructureTooLarge(NESTING_REASON.format(limit=max_depth))
                stack.extend((item, depth + 1) for item in element.value)


def json_structure_check(item: Any, *, max_depth: int, max_elements: int) -> None:
    """The same limits for one DICOM JSON data set (PS3.18 F.2), before pydicom sees it."""
    count = 0
    stack: list[tuple[Any, int]] = [(item, 0)]
    while stack:
        dataset, depth = stack.pop()
        if not isinstance(dataset, dict):
            continue
        for element in dataset.values():
            count += 1
            if count > max_elements:
                raise StructureTooLarge(ELEMENTS_REASON.format(limit=max_elements))
            if isinstance(element, dict) and element.get("vr") == "SQ":
                values = element.get("Value") or []
                if values and depth + 1 > max_depth:
                    raise StructureTooLarge(NESTING_REASON.format(limit=max_depth))
                if isinstance(values, list):
                    stack.extend((value, depth + 1) for value in values)
