"""The attributes the archive answers queries on from its index (QIDO-RS and C-FIND alike).

Each entry maps a DICOM attribute to the index column that holds it, at one level of the
information model. ``path`` is relative to the model of that level's queryset
(``Study``, ``Series`` or ``Instance``); the other levels reach it through the ``prefix``
of :func:`field_path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import dictionary_VR, tag_for_keyword


class Level(str, Enum):
    """A level of the information model (the C-FIND QueryRetrieveLevel values)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True)
class Attribute:
    tag: str  # 8 hex digits, upper case
    keyword: str
    vr: str
    level: Level
    field: str  # column path relative to the model of ``level``
    kind: str = "str"  # str | pn | date | time | int | uid | modalities | count


def _a(keyword: str, level: Level, field: str, kind: str = "str") -> Attribute:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attribute(f"{tag:08X}", keyword, dictionary_VR(tag), level, field, kind)


P, ST, SE, IM = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

ATTRIBUTES: tuple[Attribute, ...] = (
    _a("PatientName", P, "patient_name", "pn"),
    _a("PatientID", P, "patient_id"),
    _a("IssuerOfPatientID", P, "issuer_of_patient_id"),
    _a("PatientBirthDate", P, "patient_birth_date", "date"),
    _a("PatientSex", P, "patient_sex"),
    _a("StudyInstanceUID", ST, "study_instance_uid", "uid"),
    _a("StudyDate", ST, "study_date", "date"),
    _a("StudyTime", ST, "study_time", "time"),
    _a("AccessionNumber", ST, "accession_number"),
    _a("StudyDescription", ST, "study_description"),
    _a("StudyID", ST, "study_id"),
    _a("ReferringPhysicianName", ST, "referring_physician_name", "pn"),
    _a("ModalitiesInStudy", ST, "modalities_in_study", "modalities"),
    _a("NumberOfStudyRelatedSeries", ST, "number_of_series", "count"),
    _a("NumberOfStudyRelatedInstances", ST, "number_of_instances", "count"),
    _a("SeriesInstanceUID", SE, "series_instance_uid", "uid"),
    _a("Modality", SE, "modality"),
    _a("SeriesNumber", SE, "series_number", "int"),
    _a("SeriesDescription", SE, "series_description"),
    _a("BodyPartExamined", SE, "body_part_examined"),
    _a("NumberOfSeriesRelatedInstances", SE, "number_of_instances", "count"),
    _a("SOPInstanceUID", IM, "sop_instance_uid", "uid"),
    _a("SOPClassUID", IM, "sop_class_uid", "uid"),
    _a("InstanceNumber", IM, "instance_number", "int"),
    _a("Rows", IM, "rows", "int"),
    _a("Columns", IM, "columns", "int"),
    _a("BitsAllocated", IM, "bits_allocated", "int"),
    _a("NumberOfFrames", IM, "number_of_frames", "int"),
    _a("AvailableTransferSyntaxUID", IM, "transfer_syntax_uid", "uid"),
)

BY_TAG: dict[str, Attribute] = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD: dict[str, Attribute] = {a.keyword: a for a in ATTRIBUTES}

# Returned by default at each level (PS3.18 table 10.6.3-3/-4/-5).
DEFAULT_TAGS: dict[Level, tuple[str, ...]] = {
    ST: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
        "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    SE: (
        "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
        "BodyPartExamined", "NumberOfSeriesRelatedInstances",
    ),
    IM: (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
        "BitsAllocated", "NumberOfFrames", "AvailableTransferSyntaxUID",
    ),
}

# How each model reaches the columns of the levels above it.
_PREFIX: dict[tuple[Level, Level], str] = {
    (P, P): "",
    (ST, P): "patient__",
    (ST, ST): "",
    (SE, P): "study__patient__",
    (SE, ST): "study__",
    (SE, SE): "",
    (IM, P): "series__study__patient__",
    (IM, ST): "series__study__",
    (IM, SE): "series__",
    (IM, IM): "",
}


def field_path(query_level: Level, attribute: Attribute) -> str | None:
    """The ORM path of ``attribute`` from the model of ``query_level``; None if below it."""
    prefix = _PREFIX.get((query_level, attribute.level))
    return None if prefix is None else prefix + attribute.field


def attribute_lookup(key: str) -> Attribute | None:
    """An indexed attribute by keyword (``PatientName``) or tag (``00100010``)."""
    if key in BY_KEYWORD:
        return BY_KEYWORD[key]
    return BY_TAG.get(key.upper())


def tag_of(key: str) -> str | None:
    """The 8-hex-digit tag of any dictionary keyword or tag string; None if unknown."""
    if len(key) == 8:
        try:
            int(key, 16)
        except ValueError:
            pass
        else:
            return key.upper()
    tag = tag_for_keyword(key)
    return None if tag is None else f"{tag:08X}"

