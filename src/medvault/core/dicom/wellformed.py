"""Reasons in words for data sets that pydicom reads but that cannot be stored as they are.

pydicom reads leniently: a file cut short inside a sequence yields the elements before the
cut, and a value that does not fit its VR surfaces only when it is converted, as the text
of a Python exception ("invalid literal for int() ..."). An archive must refuse both, and
say which attribute is wrong and how, in words a user can act on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_description, dictionary_VR
from pydicom.dataset import Dataset

# VRs whose explicit-VR header has two reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
NESTED_TOO_DEEPLY = "the data set nests sequences too deeply to be read"
_VR_WORDS = {
    "AE": "application entity title",
    "AS": "age string",
    "AT": "attribute tag",
    "CS": "code string",
    "DA": "date (YYYYMMDD)",
    "DS": "decimal string",
    "DT": "date-time",
    "FL": "32-bit float",
    "FD": "64-bit float",
    "IS": "integer string",
    "LO": "long string",
    "LT": "long text",
    "PN": "person name",
    "SH": "short string",
    "SL": "signed long",
    "SS": "signed short",
    "ST": "short text",
    "TM": "time (HHMMSS)",
    "UI": "UID",
    "UL": "unsigned long",
    "US": "unsigned short",
}


def attribute_name(tag: int) -> str:
    """``Number of Frames (0028,0008)``; private and unknown tags by number only."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    try:
        return f"{dictionary_description(tag)} {text}"
    except KeyError:
        return f"attribute {text}"


def _raw_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", "replace")
    return str(value).strip(" \x00")[:64]


def bad_element_reason(ds: Dataset, convert: Callable[[Any], Any], _path: str = "") -> str:
    """The first element of ``ds`` (sequences included) that ``convert`` cannot convert,
    described in words; empty when every element converts.

    ``convert`` is what failed as a whole (e.g. the DICOM JSON conversion of one element).
    """
    for tag in list(ds.keys()):
        raw = ds._dict.get(tag)  # the element as read, without converting it
        where = f"{_path}{attribute_name(int(tag))}"
        try:
            element = ds[tag]
            if element.VR == "SQ":
                for index, item in enumerate(element.value or []):
                    found = bad_element_reason(item, convert, f"{where} item {index + 1}: ")
                    if found:
                        return found
                continue
            convert(element)
        except RecursionError:
            return NESTED_TOO_DEEPLY
        except Exception:  # noqa: BLE001  (any failure of the conversion is what we look for)
            vr = getattr(raw, "VR", None) or _dictionary_vr(int(tag))
            words = _VR_WORDS.get(str(vr), "")
            kind = f"VR {vr}" + (f" ({words})" if words else "")
            text = _raw_text(getattr(raw, "value", ""))
            return f"{where} has the value {text!r}, which is not a valid {kind}"
    return ""


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


class _Truncated(Exception):
    pass


class _Walker:
    """Walks the encoded elements of a data set and checks that every value and every
    undefined-length sequence or item ends inside the bytes there are."""

    def __init__(self, data: bytes, little: bool, implicit: bool) -> None:
        self.data = data
        self.order = "<" if little else ">"
        self.implicit = implicit

    def header(self, at: int, end: int, implicit: bool) -> tuple[int, str, int, int]:
        """(tag, VR, value length, value offset) of the element at ``at``."""
        if at + 8 > end:
            raise _Truncated(f"the file ends inside the header of an element at byte {at}")
        group, elem = struct.unpack_from(self.order + "HH", self.data, at)
        tag = (group << 16) | elem
        if group == 0xFFFE or implicit:
            (length,) = struct.unpack_from(self.order + "L", self.data, at + 4)
            vr = "SQ" if (implicit and group != 0xFFFE and _dictionary_vr(tag) == "SQ") else ""
            return tag, vr, length, at + 8
        vr_bytes = self.data[at + 4 : at + 6]
        if vr_bytes in _LONG_VRS:
            if at + 12 > end:
                raise _Truncated(f"the file ends inside the header of {attribute_name(tag)}")
            (length,) = struct.unpack_from(self.order + "L", self.data, at + 8)
            return tag, vr_bytes.decode("ascii"), length, at + 12
        (length,) = struct.unpack_from(self.order + "H", self.data, at + 6)
        return tag, vr_bytes.decode("latin-1"), length, at + 8

    def dataset(self, at: int, end: int, implicit: bool, stop: int | None) -> int:
        """Walk elements from ``at``; return the offset after ``stop`` (a delimiter tag)
        or ``end``."""
        while at < end:
            tag, vr, length, value_at = self.header(at, end, implicit)
            if stop is not None and tag == stop:
                return value_at
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA:
                    at = self.fragments(value_at, end)
                else:
                    # An undefined-length UN holds an implicit VR little endian sequence.
                    at = self.sequence(value_at, end, implicit or vr == "UN", tag)
                continue
            if value_at + length > end:
                raise _Truncated(
                    f"{attribute_name(tag)} declares {length} bytes but only "
                    f"{max(end - value_at, 0)} remain"
                )
            if vr == "SQ":
                self.sequence(value_at, value_at + length, implicit, tag, defined=True)
            at = value_at + length
        if stop is not None:
            raise _Truncated("a sequence item has no end (the file ends before its delimiter)")
        return at

    def sequence(
        self, at: int, end: int, implicit: bool, tag: int, *, defined: bool = False
    ) -> int:
        while at < end:
            item, _vr, length, value_at = self.header(at, end, True)
            if item == _SEQUENCE_END:
                return value_at
            if item != _ITEM:
                raise _Truncated(f"{attribute_name(tag)} holds something that is not an item")
            if length == _UNDEFINED:
                at = self.dataset(value_at, end, implicit, _ITEM_END)
            else:
                if value_at + length > end:
                    raise _Truncated(
                        f"an item of {attribute_name(tag)} runs past the end of the file"
                    )
                self.dataset(value_at, value_at + length, implicit, None)
                at = value_at + length
        if defined:
            return at
        raise _Truncated(f"{attribute_name(tag)} has no end (the file ends before its delimiter)")

    def fragments(self, at: int, end: int) -> int:
        while at < end:
            item, _vr, length, value_at = self.header(at, end, True)
            if item == _SEQUENCE_END:
                return value_at
            if item != _ITEM or length == _UNDEFINED or value_at + length > end:
                raise _Truncated("the encapsulated Pixel Data is cut short or malformed")
            at = value_at + length
        raise _Truncated(
            "the encapsulated Pixel Data has no end (the file ends before its delimiter)"
        )


def truncation_reason(data: bytes, offset: int, *, little: bool, implicit: bool) -> str:
    """Why the data set encoded in ``data[offset:]`` is cut short or malformed; empty when
    every element, sequence and item ends where it says it does."""
    if not implicit and offset + 6 <= len(data) and not data[offset + 4 : offset + 6].isalpha():
        # Labelled explicit but written implicit: pydicom notices and reads it implicit.
        implicit = True
    try:
        _Walker(data, little, implicit).dataset(offset, len(data), implicit, None)
    except _Truncated as exc:
        return f"the file is truncated or malformed: {exc}"
    except struct.error:
        return "the file is truncated or malformed: an element header is cut short"
    except RecursionError:
        return NESTED_TOO_DEEPLY
    return ""


def body_offset(data: bytes) -> int | None:
    """Where the data set of a Part 10 file starts: after the last File Meta Information
    element (walked, as pydicom reads it, rather than trusting its group length); None
    when the file meta cannot be walked."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    at = 132
    while at + 8 <= len(data) and data[at : at + 2] == b"\x02\x00":
        vr = data[at + 4 : at + 6]
        if vr in _LONG_VRS:
            if at + 12 > len(data):
                return None
            at += 12 + int.from_bytes(data[at + 8 : at + 12], "little")
        elif vr.isalpha():
            at += 8 + int.from_bytes(data[at + 6 : at + 8], "little")
        else:
            return None  # implicit VR file meta (not standard): leave it to pydicom
    return at if at <= len(data) else None


__all__ = ["attribute_name", "bad_element_reason", "body_offset", "truncation_reason"]
