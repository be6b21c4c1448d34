"""Writes for DICOMweb: STOW-RS through the archive's one ingest service."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from medvault.accounts.audit import audit_record
from medvault.archive.services import StoreResult, instance_parse, parsed_store
from medvault.core.dicom.parse import ParsedInstance
from medvault.core.dicom.multipart import Part, media_type_parse


class FailureReason(IntEnum):
    """FailureReason (0008,1197) values used in STOW-RS responses (PS3.18 table I.2-1)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_CONFLICT = 0x0111  # same SOP Instance UID, different content
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH = 0xA900  # e.g. wrong study for /studies/{study}
    CANNOT_UNDERSTAND = 0xC000
    UNSUPPORTED_MEDIA_TYPE = 0xC122


@dataclass
class StowOutcome:
    status: int  # HTTP status: 200, 202 or 409
    body: dict[str, Any]


def _uids(data: bytes) -> tuple[str, str, str]:
    """(SOPClassUID, SOPInstanceUID, StudyInstanceUID) as far as they can be read."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data), force=True, stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
        )
        return (
            str(ds.get("SOPClassUID", "") or ""),
            str(ds.get("SOPInstanceUID", "") or ""),
            str(ds.get("StudyInstanceUID", "") or ""),
        )
    except (InvalidDicomError, ValueError, TypeError, AttributeError, OSError, EOFError):
        return "", "", ""


def _uid_element(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def stow_store(
    *,
    parts: list[Part],
    user: Any,
    group: Any,
    study_uid: str | None,
    base_url: str,
    request: Any = None,
) -> StowOutcome:
    """Store each ``application/dicom`` part; build the PS3.18 store response."""
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: set[str] = set()
    for part in parts:
        ctype = media_type_parse(part.content_type or "application/dicom")
        failure: tuple[FailureReason, str] | None = None
        parsed: ParsedInstance | StoreResult | None = None
        if ctype.type == "application/dicom":
            # Parsed once: the UIDs for the response come from the data set that is stored.
            parsed = instance_parse(data=part.content)
        if isinstance(parsed, ParsedInstance):
            ds = parsed.dataset
            sop_class, sop_uid = parsed.sop_class_uid, parsed.sop_instance_uid
            part_study = str(ds.StudyInstanceUID)
        else:
            # Not stored: read what UIDs can be read, for the FailedSOPSequence.
            sop_class, sop_uid, part_study = _uids(part.content)
        if ctype.type != "application/dicom":
            failure = (FailureReason.UNSUPPORTED_MEDIA_TYPE, f"part media type {ctype.type!r} is not application/dicom")
        elif study_uid is not None and part_study and part_study != study_uid:
            failure = (
                FailureReason.DATASET_DOES_NOT_MATCH,
                f"StudyInstanceUID {part_study} differs from the study {study_uid} in the URL",
            )
        else:
            if isinstance(parsed, ParsedInstance):
                result = parsed_store(
                    parsed=parsed, data=part.content, source="stow", user=user, group=group
                )
            else:
                assert parsed is not None
                result = parsed
            if result.status in ("stored", "duplicate") and result.instance is not None:
                inst = result.instance
                series = inst.series
                study = series.study
                studies.add(study.study_instance_uid)
                item: dict[str, Any] = {
                    "00081150": _uid_element(inst.sop_class_uid),
                    "00081155": _uid_element(inst.sop_instance_uid),
                    "00081190": {"vr": "UR", "Value": [
                        f"{base_url}/studies/{study.study_instance_uid}/series/"
                        f"{series.series_instance_uid}/instances/{inst.sop_instance_uid}"
                    ]},
                }
                if result.status == "duplicate":
                    item["00081196"] = {"vr": "US", "Value": [0xB000]}  # WarningReason
                referenced.append(item)
                audit_record(
                    user=user, action="upload", request=request,
                    patient_id=study.patient.patient_id, study_uid=study.study_instance_uid,
                    series_uid=series.series_instance_uid, sop_uid=inst.sop_instance_uid,
                    detail=f"STOW-RS {result.status}",
                )
                continue
            reason_text = result.reason or "rejected"
            code = (
                FailureReason.DUPLICATE_CONFLICT
                if "differ" in reason_text.lower() or "conflict" in reason_text.lower()
                else FailureReason.CANNOT_UNDERSTAND
            )
            failure = (code, reason_text)
            sop_uid = sop_uid or (result.sop_instance_uid or "")
        code, text = failure
        failed.append({
            "00081150": _uid_element(sop_class),
            "00081155": _uid_element(sop_uid),
            "00081197": {"vr": "US", "Value": [int(code)]},
            # Error Comment: the reason in words, for people reading the response.
            "00000902": {"vr": "LO", "Value": [text[:64]]},
        })
        audit_record(
            user=user, action="upload", outcome="error", request=request, sop_uid=sop_uid,
            study_uid=part_study, detail=f"STOW-RS rejected: {text}"[:500],
        )
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{next(iter(studies))}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failed else (202 if referenced else 409)
    return StowOutcome(status=status, body=body)
