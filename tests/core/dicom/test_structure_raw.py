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


def test_implicit_vr_public_elements_stay_raw_and_convert_alike() -> None:
    """Public implicit-VR elements take the dictionary's VR without being converted (the
    structure check skips them, the DICOM JSON memo keeps them); their JSON is the same as
    when converted, on the first and on a memoised conversion."""
    from pydicom.data import get_testdata_file

    from medvault.core.dicom.json import _MEMO, canonical_sha256, dataset_to_json

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    converted = {}
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        _MEMO.clear()
        first = dataset_to_json(_round_trip(source.copy(), syntax))
        second = dataset_to_json(_round_trip(source.copy(), syntax))
        assert first == second
        converted[syntax] = canonical_sha256(first)
        plain = _round_trip(source.copy(), syntax)
        for _element in plain:  # pydicom's own conversion of every element
            pass
        assert canonical_sha256(dataset_to_json(plain)) == converted[syntax]
    assert converted[ExplicitVRLittleEndian] == converted[ImplicitVRLittleEndian]
    read = _round_trip(source.copy(), ImplicitVRLittleEndian)
    dataset_structure_check(read, max_depth=6, max_elements=10_000)
    assert isinstance(read._dict[pydicom.tag.Tag("PatientName")], RawDataElement)
