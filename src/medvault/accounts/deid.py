"""De-identification for researchers: no names, IDs or birth dates leave MedVault.

``deidentify_json`` works on DICOM JSON (PS3.18 F.2, as kept in ``Instance.metadata``),
``deidentify_dataset`` on a pydicom Dataset (returns a copy), ``pseudonym`` turns a patient ID
into a stable, keyed token so a researcher can still group studies by patient.
Removed: the attributes that name or identify a person (patient, physicians, operators,
institution, addresses, phone numbers, IDs, accession numbers, dates of birth), all private
tags, and any nested sequence items holding them. UIDs are kept: they identify images,
not people, and the archive needs them to address instances.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

from django.conf import settings

# Hex tags (group+element, upper case) of attributes that identify a person.
IDENTIFYING_TAGS: frozenset[str] = frozenset(
    {
        "00080050",  # AccessionNumber
        "00080080",  # InstitutionName
        "00080081",  # InstitutionAddress
        "00080090",  # ReferringPhysicianName
        "00080092",  # ReferringPhysicianAddress
        "00080094",  # ReferringPhysicianTelephoneNumbers
        "00080096",  # ReferringPhysicianIdentificationSequence
        "00081010",  # StationName
        "00081040",  # InstitutionalDepartmentName
        "00081048",  # PhysiciansOfRecord
        "00081050",  # PerformingPhysicianName
        "00081060",  # NameOfPhysiciansReadingStudy
        "00081070",  # OperatorsName
        "00081080",  # AdmittingDiagnosesDescription
        "00100010",  # PatientName
        "00100020",  # PatientID
        "00100021",  # IssuerOfPatientID
        "00100030",  # PatientBirthDate
        "00100032",  # PatientBirthTime
        "00100050",  # PatientInsurancePlanCodeSequence
        "00101000",  # OtherPatientIDs
        "00101001",  # OtherPatientNames
        "00101002",  # OtherPatientIDsSequence
        "00101005",  # PatientBirthName
        "00101040",  # PatientAddress
        "00101060",  # PatientMotherBirthName
        "00102154",  # PatientTelephoneNumbers
        "00102160",  # EthnicGroup
        "00104000",  # PatientComments
        "00200010",  # StudyID
        "00321032",  # RequestingPhysician
        "00321060",  # RequestedProcedureDescription (often carries names)
        "00400006",  # ScheduledPerformingPhysicianName
        "00401001",  # RequestedProcedureID
        "0040A123",  # PersonName
        "00380010",  # AdmissionID
        "00380300",  # CurrentPatientLocation
        "00081049",  # PhysiciansOfRecordIdentificationSequence
        "00081062",  # PhysiciansReadingStudyIdentificationSequence
        "00081072",  # OperatorIdentificationSequence
        "00181000",  # DeviceSerialNumber
        "001021B0",  # AdditionalPatientHistory (free text)
        "00324000",  # StudyComments (free text)
        "00400275",  # RequestAttributesSequence (requested procedure IDs)
        "00402017",  # FillerOrderNumberImagingServiceRequest
        "00402016",  # PlacerOrderNumberImagingServiceRequest
        "00380400",  # PatientInstitutionResidence
        "00101090",  # MedicalRecordLocator
    }
)


def pseudonym(patient_id: str, issuer: str = "") -> str:
    """A stable, non-reversible stand-in for a patient identity (keyed with SECRET_KEY)."""
    if not patient_id:
        return ""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{issuer}\\{patient_id}".encode(), hashlib.sha256
    ).hexdigest()
    return "ANON-" + digest[:10].upper()


def _is_private(tag: str) -> bool:
    try:
        return int(tag[:4], 16) % 2 == 1
    except ValueError:
        return True


def deidentify_json(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of a DICOM JSON dict without identifying or private attributes (recursively).

    PatientID is replaced by its pseudonym and PatientIdentityRemoved set to YES.
    """
    out: dict[str, Any] = {}
    for tag, element in metadata.items():
        key = tag.upper()
        if key in IDENTIFYING_TAGS or _is_private(key):
            continue
        if isinstance(element, dict) and element.get("vr") == "PN":
            continue  # any other person name
        if isinstance(element, dict) and element.get("vr") == "SQ" and "Value" in element:
            element = dict(element)
            element["Value"] = [
                deidentify_json(item) if isinstance(item, dict) else item
                for item in element["Value"]
            ]
        out[tag] = copy.deepcopy(element)
    patient_id = _json_string(metadata.get("00100020"))
    issuer = _json_string(metadata.get("00100021"))
    if patient_id:
        out["00100020"] = {"vr": "LO", "Value": [pseudonym(patient_id, issuer)]}
    out["00120062"] = {"vr": "CS", "Value": ["YES"]}
    return out


def _json_string(element: Any) -> str:
    if not isinstance(element, dict):
        return ""
    values = element.get("Value") or []
    return str(values[0]) if values else ""


def deidentify_dataset(ds: Any) -> Any:
    """A de-identified copy of a pydicom Dataset (file meta kept, pixel data untouched)."""
    from pydicom.dataset import Dataset

    result: Dataset = copy.deepcopy(ds)
    patient_id = str(result.get("PatientID", "") or "")
    issuer = str(result.get("IssuerOfPatientID", "") or "")

    def strip(dataset: Dataset) -> None:
        for elem in list(dataset):
            key = f"{elem.tag:08X}"
            if key in IDENTIFYING_TAGS or elem.tag.is_private or elem.VR == "PN":
                del dataset[elem.tag]
            elif elem.VR == "SQ":
                for item in elem.value:
                    strip(item)

    strip(result)
    if patient_id:
        result.PatientID = pseudonym(patient_id, issuer)
    result.PatientIdentityRemoved = "YES"
    return result


def patient_label(patient: Any, deidentified: bool) -> tuple[str, str]:
    """(name, id) to show for a Patient row; pseudonyms for de-identified users."""
    if deidentified:
        return "(de-identified)", pseudonym(patient.patient_id, patient.issuer_of_patient_id)
    return str(patient.patient_name), patient.patient_id
