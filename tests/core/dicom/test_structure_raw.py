"""The structure check walks raw elements: plain values stay unconverted, and sequences are
still found however they were encoded (explicit SQ, implicit VR, private undefined length)."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medvault.core.dicom.structure import StructureTooLarge, dataset_structure_check


def _nested(depth: int, private: bool) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        if private:
            outer.add_new(0x00090010, "LO", "ACME")
            outer.add_new(0x00091001, "SQ", Sequence([inner]))
        else:
            outer.ContentSequence = Sequence([inner])
        inner = outer
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.StudyDescription = "x"
    for elem in inner:
        ds.add(elem)
    return ds


def _round_trip(ds: Dataset, syntax: str) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("private", [False, True])
def test_nesting_found_in_every_encoding(syntax: str, private: bool) -> None:
    if private and syntax == ImplicitVRLittleEndian:
        pytest.skip("pydicom reads an unknown private tag in implicit VR as UN bytes: opaque, not nested")
    read = _round_trip(_nested(6, private), syntax)
    dataset_structure_check(read, max_depth=6, max_elements=1000)
    read = _round_trip(_nested(7, private), syntax)
    with pytest.raises(StructureTooLarge, match="nested more than 6"):
        dataset_structure_check(read, max_depth=6, max_elements=1000)


def test_plain_elements_are_not_converted() -> None:
    read = _round_trip(_nested(2, False), ExplicitVRLittleEndian)
    dataset_structure_check(read, max_depth=6, max_elements=1000)
    assert isinstance(read._dict[pydicom.tag.Tag("PatientName")], RawDataElement)
    assert isinstance(read._dict[pydicom.tag.Tag("StudyDescription")], RawDataElement)


def test_raw_elements_count() -> None:
    read = _round_trip(_nested(1, False), ExplicitVRLittleEndian)
    # PatientName, StudyDescription, ContentSequence, and the item's CodeValue.
    dataset_structure_check(read, max_depth=6, max_elements=4)
    with pytest.raises(StructureTooLarge, match="more than 3 elements"):
        dataset_structure_check(read, max_depth=6, max_elements=3)
