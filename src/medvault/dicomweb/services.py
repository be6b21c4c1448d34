"""Writes for DICOMweb: STOW-RS through the archive's one ingest service."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import pydicom
from django.db import transaction
from pydicom.errors import InvalidDicomError

from medvault.accounts.audit import audit_record
from medvault.archive.conf import structure_limits
from medvault.archive.ingest import BATCH_SIZE, BatchItem, instance_parse, parsed_store_batch
from medvault.archive.outcomes import RejectReason, StoreResult, StoreStatus
from medvault.core.dicom.multipart import Part, media_type_parse
from medvault.core.dicom.parse import ParsedInstance
from medvault.core.dicom.structure import NESTING_REASON, StructureTooLarge, json_structure_check

log = logging.getLogger(__name__)


class FailureReason(IntEnum):
    """FailureReason (0008,1197) values used in STOW-RS responses (PS3.18 table I.2-1)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_CONFLICT = 0x0111  # same SOP Instance UID, different content
    NOT_AUTHORISED = 0x0124  # a UID in it belongs to another group (PS3.7 C.5.x)
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH = 0xA900  # e.g. wrong study for /studies/{study}
    CANNOT_UNDERSTAND = 0xC000
    UNSUPPORTED_MEDIA_TYPE = 0xC122


# The FailureReason of each kind of refusal. Every RejectReason is listed (a test checks);
# the words of ``StoreResult.reason`` go into the Error Comment only.
STOW_FAILURE: dict[RejectReason, FailureReason] = {
    RejectReason.CONFLICT: FailureReason.DUPLICATE_CONFLICT,
    RejectReason.OTHER_GROUP: FailureReason.NOT_AUTHORISED,
    RejectReason.PROCESSING_FAILURE: FailureReason.PROCESSING_FAILURE,
    RejectReason.HIERARCHY_MISMATCH: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.INVALID: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.NOT_STORAGE_CLASS: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.TOO_LARGE: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.STRUCTURE_TOO_LARGE: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.ZIP_REFUSED: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.NESTED_ZIP: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.IMAGE_FIELDS_MISSING: FailureReason.CANNOT_UNDERSTAND,
    RejectReason.UNREADABLE_FILE: FailureReason.CANNOT_UNDERSTAND,
}


def stow_http_status(*, stored: int, failed: int) -> int:
    """The HTTP status of a STOW-RS response (PS3.18 10.5.3): 200 when every instance was
    stored, 202 when some were, 409 when none was."""
    if not failed:
        return 200
    return 202 if stored else 409


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


@dataclass(frozen=True)
class JsonFailure:
    """An instance of a JSON STOW-RS request that could not be turned into a data set."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: str


class StowJsonError(ValueError):
    """The request as a whole is malformed (400): no JSON part, or JSON that is not an array
    of DICOM JSON objects."""


class _BulkRefused(Exception):
    """A BulkDataURI with no matching part, or bulk data we do not take."""


def _json_value(item: dict[str, Any], tag: str) -> str:
    element = item.get(tag)
    if isinstance(element, dict) and isinstance(element.get("Value"), list) and element["Value"]:
        return str(element["Value"][0])[:64]
    return ""


def stow_json_parts(parts: list[Part]) -> tuple[list[Part], list[JsonFailure]]:
    """``multipart/related; type="application/dicom+json"`` (PS3.18 10.5.1.2.2) as Part 10
    parts for ``stow_store``.

    The first part is a JSON array of DICOM JSON data sets; the other parts are bulk data whose
    ``Content-Location`` a ``BulkDataURI`` names (``InlineBinary`` works too). Bulk data must
    be uncompressed (``application/octet-stream``); the data set is written in Explicit VR
    Little Endian. Data sets that cannot be built come back as failures.
    """
    import json

    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from medvault.core.dicom.parse import dataset_to_part10

    if not parts or media_type_parse(parts[0].content_type).type != "application/dicom+json":
        raise StowJsonError("the first part must be the application/dicom+json metadata")
    try:
        items = json.loads(parts[0].content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StowJsonError(f"the metadata part is not JSON: {exc}") from None
    except RecursionError:
        # Python's JSON reader recurses per nesting level: far past any DICOM limit.
        raise StowJsonError(
            "the metadata part nests deeper than any DICOM data set may "
            f"({NESTING_REASON.format(limit=structure_limits()[0]).split(';')[0]})"
        ) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise StowJsonError("the metadata part must be a JSON array of DICOM JSON objects")
    bulk: dict[str, Part] = {}
    for part in parts[1:]:
        location = part.headers.get("content-location", "").strip()
        if location:
            bulk[location] = part
    out: list[Part] = []
    failures: list[JsonFailure] = []
    for item in items:
        sop_class, sop_uid = _json_value(item, "00080016"), _json_value(item, "00080018")

        def bulk_data(uri: str) -> bytes:
            found = bulk.get(uri)
            if found is None:
                raise _BulkRefused(f"no bulk data part has Content-Location {uri[:100]}")
            kind = media_type_parse(found.content_type or "application/octet-stream")
            if kind.type != "application/octet-stream" or kind.params.get("transfer-syntax"):
                raise _BulkRefused(
                    f"send compressed images as application/dicom, not as bulk data "
                    f"({found.content_type[:60]})"
                )
            return found.content

        max_depth, max_elements = structure_limits()
        try:
            json_structure_check(item, max_depth=max_depth, max_elements=max_elements)
        except StructureTooLarge as exc:
            failures.append(JsonFailure(sop_class, sop_uid, str(exc)))
            continue
        try:
            ds = Dataset.from_json(item, bulk_data_uri_handler=bulk_data)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(sop_class)
            meta.MediaStorageSOPInstanceUID = UID(sop_uid)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.set_original_encoding(False, True)
            data = dataset_to_part10(ds)
        except _BulkRefused as exc:
            failures.append(JsonFailure(sop_class, sop_uid, str(exc)))
            continue
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            failures.append(JsonFailure(sop_class, sop_uid, f"cannot build the data set: {exc}"))
            continue
        out.append(Part({"content-type": "application/dicom"}, data))
    return out, failures


def _batch_store(items: list[BatchItem], *, user: Any, group: Any) -> list[StoreResult]:
    """Store the parts in batches (``parsed_store_batch``: one blob barrier and one index
    transaction per batch) so that each part's failure is its own: a part the index refuses,
    or an error storing it, becomes that part's FailureReason, and the other parts of its
    batch are stored (a ``[good, broken, good]`` request stores both good ones). An
    unreachable database or a full blob store still fails the request (503/507): every later
    part would fail the same way, and the client should retry."""
    results: list[StoreResult] = []
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start:start + BATCH_SIZE]
        outcomes = parsed_store_batch(batch, source="stow", user=user, group=group)
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                uid = item.parsed.sop_instance_uid
                log.error("STOW-RS part %s could not be stored", uid, exc_info=outcome)
                outcome = StoreResult.refused(
                    RejectReason.PROCESSING_FAILURE, f"processing failure: {type(outcome).__name__}",
                    sop_instance_uid=uid,
                )
            results.append(outcome)
    return results


_Checked = tuple[str, str, str, tuple[FailureReason, str] | None, ParsedInstance | StoreResult | None, bytes]


def _batch_check(parts: list[Part], study_uid: str | None) -> list[_Checked]:
    """Each part parsed and checked: (SOP class, SOP instance and study UIDs as far as they
    can be read, the failure found, the parsed instance or its rejection, the bytes)."""
    checked: list[_Checked] = []
    for part in parts:
        ctype = media_type_parse(part.content_type or "application/dicom")
        failure: tuple[FailureReason, str] | None = None
        parsed: ParsedInstance | StoreResult | None = None
        if ctype.type == "application/dicom":
            # Parsed once: the UIDs for the response come from the data set that is stored.
            parsed = instance_parse(data=part.content)
        if isinstance(parsed, ParsedInstance):
            sop_class, sop_uid = parsed.sop_class_uid, parsed.sop_instance_uid
            part_study = str(parsed.dataset.StudyInstanceUID)
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
        if failure is not None and isinstance(parsed, ParsedInstance):
            parsed = None  # not stored
        checked.append((sop_class, sop_uid, part_study, failure, parsed, part.content))
    return checked


def _uid_element(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _batch_report(
    checked: list[_Checked],
    stored_results: Iterator[StoreResult],
    *,
    user: Any,
    request: Any,
    base_url: str,
    referenced: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    studies: set[str],
) -> None:
    """Add each part of a batch to the response (``referenced`` or ``failed``) and audit it."""
    for sop_class, sop_uid, part_study, failure, parsed, _data in checked:
        if failure is None:
            if isinstance(parsed, ParsedInstance):
                result = next(stored_results)
            else:
                assert parsed is not None
                result = parsed
            inst = result.instance  # stored now or before (a duplicate); None when rejected
            if inst is not None:
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
                if result.status is StoreStatus.DUPLICATE:
                    item["00081196"] = {"vr": "US", "Value": [0xB000]}  # WarningReason
                referenced.append(item)
                audit_record(
                    user=user, action="upload", request=request,
                    patient_id=study.patient.patient_id, study_uid=study.study_instance_uid,
                    series_uid=series.series_instance_uid, sop_uid=inst.sop_instance_uid,
                    detail=f"STOW-RS {result.status}",
                )
                continue
            assert result.reject is not None  # set on every rejected result
            failure = (STOW_FAILURE[result.reject], result.reason or "rejected")
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


def stow_store(
    *,
    parts: list[Part],
    user: Any,
    group: Any,
    study_uid: str | None,
    base_url: str,
    request: Any = None,
    failures: list[JsonFailure] | None = None,
) -> StowOutcome:
    """Store each ``application/dicom`` part; build the PS3.18 store response.

    ``failures`` are instances that failed before they became parts (from
    ``stow_json_parts``); they are reported and audited like the others.
    """
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: set[str] = set()
    for unbuilt in failures or []:
        failed.append({
            "00081150": _uid_element(unbuilt.sop_class_uid),
            "00081155": _uid_element(unbuilt.sop_instance_uid),
            "00081197": {"vr": "US", "Value": [int(FailureReason.CANNOT_UNDERSTAND)]},
            "00000902": {"vr": "LO", "Value": [unbuilt.reason[:64]]},
        })
        audit_record(
            user=user, action="upload", outcome="error", request=request,
            sop_uid=unbuilt.sop_instance_uid, detail=f"STOW-RS rejected: {unbuilt.reason}"[:500],
        )
    # Part by part in batches of BATCH_SIZE: a batch is parsed and checked, its storable parts
    # are stored together (one blob barrier, one index transaction), and the response lists
    # every part in the order it came. One batch of parsed data sets is held at a time.
    for first in range(0, len(parts), BATCH_SIZE):
        checked = _batch_check(parts[first:first + BATCH_SIZE], study_uid)
        to_store = [BatchItem(parsed, data) for *_, parsed, data in checked if isinstance(parsed, ParsedInstance)]
        stored_results = iter(_batch_store(to_store, user=user, group=group))
        # The batch's audit records in one transaction, not one commit each.
        with transaction.atomic():
            _batch_report(
                checked, stored_results, user=user, request=request, base_url=base_url,
                referenced=referenced, failed=failed, studies=studies,
            )
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{next(iter(studies))}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    body["00081199"] = {"vr": "SQ", "Value": referenced}
    return StowOutcome(status=stow_http_status(stored=len(referenced), failed=len(failed)), body=body)
