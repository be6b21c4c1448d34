"""De-identification for researchers, after DICOM PS3.15 Annex E (Basic Application Level
Confidentiality Profile) with two explicit options.

``deidentify_json`` works on DICOM JSON (PS3.18 F.2, as kept in ``Instance.metadata``),
``deidentify_dataset`` on a pydicom Dataset (returns a copy), ``pseudonym`` turns a patient ID
into a stable, keyed token so a researcher can still group studies by patient.

Removed, at every nesting level: the attributes that name or identify a person (patient,
physicians, operators, institution, addresses, phone numbers, IDs, accession numbers), patient
characteristics (birth date, age, size, weight, occupation, ...), free text (descriptions,
comments, protocol names, SR text values), every person name (VR PN), all private tags, and,
unless ``MEDVAULT_DEID_RETAIN_DATES`` is on, every date and time (VR DA, DT, TM).
The data set is marked PatientIdentityRemoved YES with DeidentificationMethod and
DeidentificationMethodCodeSequence naming the profile (DCM 113100) and its option:

* Retain Longitudinal Temporal Information With Full Dates Option (DCM 113106), only with
  ``MEDVAULT_DEID_RETAIN_DATES=true``.

UIDs are replaced, as the Basic Profile asks (no Retain UIDs Option): every UI value except
class and transfer syntax UIDs (SOPClassUID, ReferencedSOPClassUID, ...) and the well-known UIDs
of the standard becomes ``uid_pseudonym(original)``, ``2.25.<UUID>`` where the UUID is a keyed
hash of the original (``MEDVAULT_DEID_UID_KEY``, default SECRET_KEY). The same original always
gives the same pseudonym, so a study, its series and instances, and references between them stay
consistent across requests and between QIDO-RS, metadata and pages; without the key a pseudonym
cannot be linked to the original. ``web.uid_middleware`` applies the same function to the
Study/Series/SOP Instance UIDs in everything a researcher is sent (pages, URLs, JSON) and resolves
the pseudonyms a researcher sends back.

Pixel data is not inspected for burned-in text (Annex E's Clean Pixel Data Option is not
offered); researchers get no DICOM files (the role table's "download DICOM: no").
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import hmac
from typing import Any

from django.conf import settings

from medvault.accounts import conf

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


def _tags(*keywords: str) -> frozenset[str]:
    from pydicom.datadict import tag_for_keyword

    out = set()
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(f"unknown DICOM keyword {keyword!r}")
        out.add(f"{tag:08X}")
    return frozenset(out)


# Annex E table E.1-1 attributes beyond IDENTIFYING_TAGS: patient characteristics, free text,
# locations and equipment identifiers.
ANNEX_E_TAGS: frozenset[str] = _tags(
    # patient characteristics
    "Occupation", "PatientAge", "PatientSize", "PatientWeight", "MilitaryRank", "BranchOfService",
    "MedicalAlerts", "Allergies", "CountryOfResidence", "RegionOfResidence",
    "PatientReligiousPreference", "SmokingStatus", "PregnancyStatus", "LastMenstrualDate",
    "PatientState", "SpecialNeeds", "PatientTelecomInformation", "ResponsibleOrganization",
    "InsurancePlanIdentification", "PatientSexNeutered", "PatientBirthDateInAlternativeCalendar",
    "PatientPrimaryLanguageCodeSequence", "EthnicGroupCodeSequence",
    # free text
    "StudyDescription", "SeriesDescription", "ImageComments", "ProtocolName",
    "PerformedProcedureStepDescription", "ReasonForStudy", "ReasonForTheRequestedProcedure",
    "DerivationDescription", "AcquisitionComments", "TextValue", "TextComments",
    "ScheduledProcedureStepDescription", "VisitComments", "ImagingServiceRequestComments",
    "RequestedProcedureComments", "InterpretationText", "DischargeDiagnosisDescription",
    "IdentifyingComments", "FrameComments", "ServiceEpisodeDescription",
    "PerformedProcedureStepID", "ScheduledProcedureStepID", "RequestingService",
    "RequestedProcedureLocation", "PerformedLocation", "PerformedStationName",
    "ScheduledStationName", "ScheduledProcedureStepLocation", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "PersonAddress", "PersonTelephoneNumbers",
    "InstitutionCodeSequence", "IssuerOfAccessionNumberSequence", "DetectorID", "GantryID",
    "PlateID", "CassetteID", "DeviceUID", "StorageMediaFileSetID", "TimezoneOffsetFromUTC",
    "AdmittingDiagnosesCodeSequence", "ReferencedPatientSequence", "ContentCreatorName",
)
REMOVED_TAGS: frozenset[str] = IDENTIFYING_TAGS | ANNEX_E_TAGS
DATE_VRS = frozenset({"DA", "DT", "TM"})


def retain_dates() -> bool:
    """The Retain Longitudinal Temporal Information With Full Dates Option is on."""
    return conf.deid_retain_dates()


def removes(tag: str, vr: str = "") -> bool:
    """Whether a researcher's view drops this attribute (also: no matching on it)."""
    key = tag.upper()
    if key in REMOVED_TAGS or _is_private(key) or vr == "PN":
        return True
    if not vr:
        from pydicom.datadict import dictionary_VR

        try:
            vr = dictionary_VR(int(key, 16))
        except (KeyError, ValueError):
            return False
    return vr in DATE_VRS and not retain_dates()


def method_json() -> dict[str, Any]:
    """DeidentificationMethod and its code sequence, as DICOM JSON elements."""
    codes = [
        ("113100", "Basic Application Confidentiality Profile"),
    ]
    if retain_dates():
        codes.append(("113106", "Retain Longitudinal Temporal Information Full Dates Option"))
    return {
        "00120063": {"vr": "LO", "Value": [
            "PS3.15 E Basic Profile"
            + ("; Retain Full Dates" if retain_dates() else "")
        ]},
        "00120064": {"vr": "SQ", "Value": [
            {"00080100": {"vr": "SH", "Value": [code]}, "00080102": {"vr": "SH", "Value": ["DCM"]},
             "00080104": {"vr": "LO", "Value": [meaning]}}
            for code, meaning in codes
        ]},
    }


def pseudonym(patient_id: str, issuer: str = "") -> str:
    """A stable, non-reversible stand-in for a patient identity (keyed with SECRET_KEY)."""
    if not patient_id:
        return ""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{issuer}\\{patient_id}".encode(), hashlib.sha256
    ).hexdigest()
    return "ANON-" + digest[:10].upper()


# Original -> pseudonym pairs shown during the current request; ``web.uid_middleware``
# stores them (UidPseudonym) so that the pseudonyms can be resolved when they come back.
_issued: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "medvault_uid_pseudonyms", default=None
)


def uid_key() -> bytes:
    return conf.deid_uid_key()


def uid_pseudonym(uid: str) -> str:
    """The pseudonymous UID that stands for ``uid``: ``2.25.`` and a version-8 UUID (PS3.5 B.2)
    made of the first 16 bytes of HMAC-SHA256(key, uid). Deterministic and not reversible."""
    raw = bytearray(hmac.new(uid_key(), b"uid\\" + uid.encode(), hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (custom)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    pseudonym = "2.25." + str(int.from_bytes(raw, "big"))
    issued = _issued.get()
    if issued is not None:
        issued[uid] = pseudonym
    return pseudonym


def uids_issued_begin() -> dict[str, str]:
    """Start collecting the pseudonyms shown in this request (returns the collecting dict)."""
    issued: dict[str, str] = {}
    _issued.set(issued)
    return issued


def uids_issued_end() -> None:
    _issued.set(None)


def keeps_uid(tag: str, uid: str) -> bool:
    """Whether a UI value stays as it is: class and transfer syntax UIDs, well-known UIDs."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]  # re-exported without __all__

    if uid in UID_dictionary:
        return True
    try:
        keyword = keyword_for_tag(int(tag, 16))
    except ValueError:
        return True
    return keyword.endswith("ClassUID") or keyword in _KEPT_UID_KEYWORDS


_KEPT_UID_KEYWORDS = frozenset({
    "TransferSyntaxUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
    "PrivateInformationCreatorUID", "ImplementationClassUID",
})


def _uid_value(tag: str, value: Any) -> Any:
    if isinstance(value, str) and value and not keeps_uid(tag, value):
        return uid_pseudonym(value)
    return value


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
        vr = element.get("vr", "") if isinstance(element, dict) else ""
        if removes(tag, vr):
            continue
        if isinstance(element, dict) and element.get("vr") == "SQ" and "Value" in element:
            element = dict(element)
            element["Value"] = [
                deidentify_json(item) if isinstance(item, dict) else item
                for item in element["Value"]
            ]
        element = copy.deepcopy(element)
        if vr == "UI" and isinstance(element.get("Value"), list):
            element["Value"] = [_uid_value(tag, value) for value in element["Value"]]
        out[tag] = element
    patient_id = _json_string(metadata.get("00100020"))
    issuer = _json_string(metadata.get("00100021"))
    if patient_id:
        out["00100020"] = {"vr": "LO", "Value": [pseudonym(patient_id, issuer)]}
    out["00120062"] = {"vr": "CS", "Value": ["YES"]}
    out.update(method_json())
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
            if elem.tag.is_private or removes(f"{elem.tag:08X}", str(elem.VR)):
                del dataset[elem.tag]
            elif elem.VR == "SQ":
                for item in elem.value:
                    strip(item)
            elif elem.VR == "UI" and elem.value:
                tag = f"{elem.tag:08X}"
                if elem.VM > 1:
                    elem.value = [_uid_value(tag, str(v)) for v in elem.value]
                else:
                    elem.value = _uid_value(tag, str(elem.value))

    strip(result)
    if patient_id:
        result.PatientID = pseudonym(patient_id, issuer)
    result.PatientIdentityRemoved = "YES"
    result.update(Dataset.from_json(method_json()))
    meta = getattr(result, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in result:
        meta.MediaStorageSOPInstanceUID = result.SOPInstanceUID
    return result


def patient_label(patient: Any, deidentified: bool) -> tuple[str, str]:
    """(name, id) to show for a Patient row; pseudonyms for de-identified users."""
    if deidentified:
        return "(de-identified)", pseudonym(patient.patient_id, patient.issuer_of_patient_id)
    return str(patient.patient_name), patient.patient_id
