"""Archive writes: the one ingest service every door (CLI, web, STOW-RS, C-STORE) calls.

Order of work for one instance: parse and validate (decode every frame) -> look for the
SOP Instance UID (duplicate / conflicting re-send) -> re-encode losslessly and verify ->
write the blob durably -> index it in one transaction -> run the stored hooks on commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medvault.archive.models import (
    CompressionTask,
    Instance,
    Patient,
    PatientConflict,
    Series,
    Study,
)
from medvault.archive.blobstore import blob_store
from medvault.core.codecs import CODECS, recompress
from medvault.core.dicom.parse import (
    DicomRejected,
    ParsedInstance,
    dataset_to_part10,
    parse_instance,
    splice_encapsulated_pixels,
)
from medvault.core.dicom.secondary_capture import image_to_secondary_capture, is_image
from medvault.core.dicom.structure import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ELEMENTS,
    NESTING_REASON,
    StructureTooLarge,
    dataset_structure_check,
)
from medvault.core.dicom.wellformed import NESTED_TOO_DEEPLY
from medvault.core.dicom.zipsafe import ZipLimits, ZipRejected, is_zip, iter_zip_members

logger = logging.getLogger(__name__)

NATIVE_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}

STORED = "stored"
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(frozen=True)
class StoreResult:
    status: str  # "stored" | "duplicate" | "rejected"
    sop_instance_uid: str | None
    reason: str | None
    instance: Instance | None  # the stored (or already present) row; None when rejected
    path: str = ""  # what the caller called the input (file name / zip member); display only
    # Refused because a UID in it belongs to another group (DIMSE 0x0124, Not Authorized).
    other_group: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON line the ingest command prints."""
        return {
            "path": self.path,
            "status": self.status,
            "sop_instance_uid": self.sop_instance_uid,
            "reason": self.reason,
        }


_stored_hooks: list[Callable[[Instance], None]] = []


def register_stored_hook(fn: Callable[[Instance], None]) -> None:
    """Run ``fn(instance)`` via ``transaction.on_commit`` after each NEW instance is stored."""
    if fn not in _stored_hooks:
        _stored_hooks.append(fn)


class _AlreadyStored(Exception):
    """Another writer inserted the same SOP Instance UID first."""


class _IndexRejected(Exception):
    def __init__(self, reason: str, *, other_group: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.other_group = other_group


def other_group_reason(what: str, uid: str) -> str:
    """The refusal of a UID that another group holds. It names only what the sender sent:
    never the other group, its patient, study or anything stored under the UID."""
    return (f"{what} {uid} is in use outside the group this upload goes to; not stored "
            "(UIDs are unique in the archive; ask an administrator)")


def _other_group(what: str, uid: str) -> _IndexRejected:
    return _IndexRejected(other_group_reason(what, uid), other_group=True)


def _group_id(group: Group | None) -> int | None:
    return group.pk if group is not None else None


# --- small value helpers ---------------------------------------------------------------


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()[:limit]


def _person_name(value: Any) -> str:
    # Trailing empty components carry no meaning: "Doe^John^^^" == "Doe^John", "^^^^" == "".
    text = str(value or "").replace("\x00", "").strip()
    groups = [group.rstrip("^ ") for group in text.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _date(value: Any) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) >= 8 and text[:8].isdigit():
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def _int(value: Any) -> int | None:
    try:
        number = int(str(value).strip()) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if number is not None and abs(number) > 2**31 - 1:
        return None
    return number


def _resolve_group(group: Group | str | None) -> Group | None:
    if group is None or isinstance(group, Group):
        return group
    name = str(group).strip()
    if not name:
        return None
    found, _ = Group.objects.get_or_create(name=name[:150])
    return found


def _user_or_none(user: Any) -> Any:
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None):
        return user
    return None


# --- duplicates ------------------------------------------------------------------------


# Attributes whose encoded value depends on the transfer syntax (byte order of the pixel
# data, the pixel layout a codec needs, encapsulation offsets); the decoded pixels, compared
# by their hash, stand for them when two copies of one instance are compared.
SYNTAX_DEPENDENT_TAGS = {
    "7FE00010",  # Pixel Data
    "7FE00008",  # Float Pixel Data
    "7FE00009",  # Double Float Pixel Data
    "7FE00001",  # Extended Offset Table
    "7FE00002",  # Extended Offset Table Lengths
    "00280006",  # Planar Configuration
    "00280004",  # Photometric Interpretation (RGB is coded as YBR_RCT/ICT/FULL by codecs)
}


def _differing_attributes(
    stored: dict[str, Any], received: dict[str, Any], ignore: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    from pydicom.datadict import keyword_for_tag

    names = []
    for tag in sorted((set(stored) | set(received)) - ignore):
        a, b = stored.get(tag), received.get(tag)
        if isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k != "vr"}
            b = {k: v for k, v in b.items() if k != "vr"}
        if a != b:
            try:
                names.append(keyword_for_tag(int(tag, 16)) or tag)
            except ValueError:
                names.append(tag)
    return names


def _compare_existing(existing: Instance, parsed: ParsedInstance, path: str) -> StoreResult:
    uid = existing.sop_instance_uid
    if existing.pixel_sha256 == parsed.pixel_sha256 and existing.content_sha256 == parsed.content_sha256:
        return StoreResult(DUPLICATE, uid, "already stored with the same pixels and metadata", existing, path)
    if existing.pixel_sha256 != parsed.pixel_sha256:
        reason = "SOP Instance UID already stored with different pixel data"
    else:
        diff = _differing_attributes(existing.metadata, parsed.metadata, SYNTAX_DEPENDENT_TAGS)
        if not diff:
            # The same decoded pixels and the same attributes: this instance in another
            # transfer syntax (big endian, another codec) is the instance already stored.
            return StoreResult(
                DUPLICATE, uid, "already stored: the same instance in another transfer syntax",
                existing, path,
            )
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        reason = f"SOP Instance UID already stored with different metadata ({shown or 'unknown'})"
    return StoreResult(REJECTED, uid, reason + "; the stored instance is kept", None, path)


# --- storage form ----------------------------------------------------------------------


def _target_codec() -> str:
    codec = str(getattr(settings, "MEDVAULT_COMPRESSION", "none") or "none").lower()
    if codec != "none" and codec not in CODECS:
        raise ImproperlyConfigured(
            f"MEDVAULT_COMPRESSION={codec!r}; use one of {', '.join(['none', *CODECS])}"
        )
    return codec


def compression_deferred() -> bool:
    """True when ingest keeps what arrived and the worker compresses later."""
    return bool(getattr(settings, "MEDVAULT_COMPRESSION_DEFERRED", False))


def compression_applies(parsed: ParsedInstance) -> bool:
    """True when ``MEDVAULT_COMPRESSION`` would re-encode this instance's pixels.

    Lossy input, pixels that do not reproduce the stored bytes exactly and instances
    already in the target syntax are never re-encoded.
    """
    target = CODECS.get(_target_codec())
    return (
        target is not None
        and parsed.pixels is not None
        and parsed.pixels_exact
        and not parsed.lossy
        and parsed.received_transfer_syntax_uid != target.transfer_syntax_uid
    )


def _as_received(parsed: ParsedInstance, data: bytes) -> bytes:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return data
    return dataset_to_part10(parsed.dataset)


def storage_bytes(parsed: ParsedInstance, data: bytes, *, verify: bool = True) -> tuple[bytes, str]:
    """Return the Part 10 bytes to keep and their transfer syntax.

    Lossless input is re-encoded with ``MEDVAULT_COMPRESSION`` and verified pixel by pixel;
    anything else (lossy input, a codec that refused, a failed round trip) is kept as
    received, byte for byte when it arrived as a Part 10 file. ``verify=False`` skips the
    in-memory round trip, for a caller that decodes the returned file itself (deferred
    compression) before it replaces anything.
    """
    ts = parsed.received_transfer_syntax_uid
    codec = _target_codec()
    if compression_applies(parsed):
        target = CODECS[codec]
        assert parsed.pixels is not None
        new, why = recompress(
            parsed.dataset, parsed.pixels, codec, verify=verify,
            jpegxl_effort=int(getattr(settings, "MEDVAULT_JPEGXL_EFFORT", 3)),
        )
        if new is not None:
            encoded = None
            if ts == "1.2.840.10008.1.2.1" and "PlanarConfiguration" not in parsed.dataset:
                encoded = splice_encapsulated_pixels(data, new.file_meta, bytes(new.PixelData))
            if encoded is None:
                encoded = dataset_to_part10(new)
            # Input that is already compressed losslessly (deflate, RLE, ...) can be smaller
            # than our re-encoding of it; both are lossless, so keep the smaller one.
            if ts in NATIVE_UNCOMPRESSED or len(encoded) < len(data):
                return encoded, target.transfer_syntax_uid
            why = f"{codec} ({len(encoded)} bytes) is no smaller than the input"
        logger.info("%s kept as received: %s", parsed.sop_instance_uid, why)
    return _as_received(parsed, data), ts


# --- index -----------------------------------------------------------------------------


def _patient_identity(ds: Dataset) -> dict[str, str]:
    return {
        "patient_id": _text(ds, "PatientID", 64),
        "issuer_of_patient_id": _text(ds, "IssuerOfPatientID", 64),
    }


def _patient_received(ds: Dataset) -> dict[str, Any]:
    return {
        "patient_name": _person_name(ds.get("PatientName"))[:324],
        "patient_birth_date": _date(ds.get("PatientBirthDate")),
        "patient_sex": _text(ds, "PatientSex", 16),
    }


def _patient_conflicts(patient: Patient, ds: Dataset) -> list[PatientConflict]:
    """Demographics that differ from the stored patient's (recorded; the patient is kept)."""
    conflicts: list[PatientConflict] = []
    for field, value in _patient_received(ds).items():
        stored = getattr(patient, field)
        if field == "patient_name":
            stored = _person_name(stored)
        if value not in (None, "") and stored not in (None, "") and value != stored:
            conflicts.append(
                PatientConflict(
                    patient=patient,
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    field=field,
                    stored_value=str(stored)[:324],
                    received_value=str(value)[:324],
                )
            )
    return conflicts


def _patient_for(ds: Dataset, group: Group | None) -> tuple[Patient, list[PatientConflict]]:
    """The patient (group, issuer, PatientID): a group never finds another group's patient."""
    identity = {**_patient_identity(ds), "group": group}
    try:
        patient, created = Patient.objects.get_or_create(**identity, defaults=_patient_received(ds))
    except Patient.MultipleObjectsReturned:
        # Only without a group, on a database without partial unique indexes (MariaDB):
        # two concurrent first instances of one patient may both have created a row.
        patient, created = Patient.objects.filter(**identity).order_by("pk").first(), False
    return patient, ([] if created else _patient_conflicts(patient, ds))


def _known_series(ds: Dataset, group: Group | None) -> Series | None:
    """The instance's series with its study and patient, read in one query.

    The common case (the second and later instances of a series): the series is stored,
    under this study and this patient identity. Anything else (a new series, or a UID that
    belongs elsewhere) returns ``None`` and takes the long way, which creates what is new
    and explains a mismatch. No row lock is needed here: the counts are incremented in SQL,
    and only a new series (the long way, with the study locked) changes ModalitiesInStudy.
    """
    found = list(
        Series.objects.select_related("study__patient").filter(
            series_instance_uid=str(ds.SeriesInstanceUID)
        )[:1]
    )
    if not found:
        return None
    series = found[0]
    patient = series.study.patient
    identity = _patient_identity(ds)
    if (
        series.study.group_id != _group_id(group)
        or series.study.study_instance_uid != str(ds.StudyInstanceUID)
        or patient.patient_id != identity["patient_id"]
        or patient.issuer_of_patient_id != identity["issuer_of_patient_id"]
    ):
        return None
    return series


def _same_identity(a: Patient, b: Patient) -> bool:
    return (a.group_id, a.patient_id, a.issuer_of_patient_id) == (
        b.group_id, b.patient_id, b.issuer_of_patient_id)


def _study_for(ds: Dataset, patient: Patient, group: Group | None) -> Study:
    uid = str(ds.StudyInstanceUID)
    # Locked: counts and ModalitiesInStudy are read-modify-write (a no-op on SQLite, whose
    # IMMEDIATE transactions already serialise writers).
    study, _ = Study.objects.select_for_update().get_or_create(
        study_instance_uid=uid,
        defaults={
            "patient": patient,
            "study_date": _date(ds.get("StudyDate")),
            "study_time": _text(ds, "StudyTime", 32),
            "accession_number": _text(ds, "AccessionNumber", 64),
            "study_description": _text(ds, "StudyDescription", 128),
            "study_id": _text(ds, "StudyID", 16),
            "referring_physician_name": _person_name(ds.get("ReferringPhysicianName"))[:324],
            "group": group,
        },
    )
    if study.group_id != _group_id(group):
        raise _other_group("StudyInstanceUID", uid)
    if study.patient_id != patient.pk and not _same_identity(study.patient, patient):
        # Nothing of the stored patient is named: the sender may not see that study.
        raise _IndexRejected(
            f"StudyInstanceUID {uid} is already stored for another patient; patients are "
            "never merged"
        )
    return study


def _series_for(ds: Dataset, study: Study) -> tuple[Series, bool]:
    uid = str(ds.SeriesInstanceUID)
    series, created = Series.objects.get_or_create(
        series_instance_uid=uid,
        defaults={
            "study": study,
            "modality": _text(ds, "Modality", 16),
            "series_number": _int(ds.get("SeriesNumber")),
            "series_description": _text(ds, "SeriesDescription", 128),
            "body_part_examined": _text(ds, "BodyPartExamined", 64),
        },
    )
    if series.study_id != study.pk:
        if series.study.group_id != study.group_id:
            raise _other_group("SeriesInstanceUID", uid)
        raise _IndexRejected(f"SeriesInstanceUID {uid} is already stored in another study")
    return series, created


def _index(
    parsed: ParsedInstance,
    *,
    blob_key: str,
    stored_ts: str,
    received_bytes: int,
    stored_bytes: int,
    source: str,
    user: Any,
    group: Group | None,
    compress_later: bool = False,
) -> Instance:
    ds = parsed.dataset
    series = _known_series(ds, group)
    if series is not None:
        study, patient = series.study, series.study.patient
        conflicts, series_created = _patient_conflicts(patient, ds), False
    else:
        patient, conflicts = _patient_for(ds, group)
        study = _study_for(ds, patient, group)
        if study.patient_id != patient.pk:
            # The race of two first instances of one patient without a group on a database
            # without partial unique indexes (see Patient): one patient, two rows. The
            # study's row is the patient.
            patient = study.patient
            conflicts = _patient_conflicts(patient, ds)
        series, series_created = _series_for(ds, study)
    # The study row is the first row this transaction locks, on both ways (the long way's
    # select_for_update, or this UPDATE), and the series row only after it: writers to one
    # study queue on it instead of deadlocking (PostgreSQL, InnoDB) over the series row,
    # which the instance's foreign key check also locks.
    changes: dict[str, Any] = {
        "number_of_instances": F("number_of_instances") + 1,
        "updated_at": dt.datetime.now(dt.UTC),
    }
    if series_created:
        # Only a new series can add a modality.
        modalities = sorted(
            {m for m in Series.objects.filter(study=study).values_list("modality", flat=True) if m}
        )
        changes["number_of_series"] = F("number_of_series") + 1
        changes["modalities_in_study"] = "\\".join(modalities)[:128]
    Study.objects.filter(pk=study.pk).update(**changes)
    try:
        # No savepoint: on a clash the whole transaction is rolled back by the caller.
        instance = Instance.objects.create(
            sop_instance_uid=parsed.sop_instance_uid,
            series=series,
            sop_class_uid=parsed.sop_class_uid,
            instance_number=_int(ds.get("InstanceNumber")),
            rows=_int(ds.get("Rows")),
            columns=_int(ds.get("Columns")),
            bits_allocated=_int(ds.get("BitsAllocated")),
            number_of_frames=_int(ds.get("NumberOfFrames")) or 1,
            received_transfer_syntax_uid=parsed.received_transfer_syntax_uid,
            transfer_syntax_uid=stored_ts,
            blob_key=blob_key,
            pixel_sha256=parsed.pixel_sha256,
            content_sha256=parsed.content_sha256,
            received_bytes=received_bytes,
            stored_bytes=stored_bytes,
            raw_pixel_bytes=parsed.raw_pixel_bytes,
            metadata=parsed.metadata,
            uploaded_by=_user_or_none(user),
            source=source[:32],
        )
    except IntegrityError:
        raise _AlreadyStored() from None
    if conflicts:
        PatientConflict.objects.bulk_create(conflicts)
    Series.objects.filter(pk=series.pk).update(number_of_instances=F("number_of_instances") + 1)
    if compress_later:
        CompressionTask.objects.create(instance=instance)
    # The counts in hand are not read back: on SQLite (whose IMMEDIATE transaction locks the
    # whole database) they are exact; elsewhere a concurrent writer to the same series may
    # have added to them since they were read. The index rows hold the true counts.
    series.number_of_instances += 1
    study.number_of_instances += 1
    if series_created:
        study.number_of_series += 1
        study.modalities_in_study = changes["modalities_in_study"]
    study.patient = patient
    series.study = study
    instance.series = series
    for hook in list(_stored_hooks):
        transaction.on_commit(lambda hook=hook: hook(instance))
    return instance


def _existing_in_group(existing: Instance, parsed: ParsedInstance, group: Group | None,
                       path: str) -> StoreResult:
    """A re-sent SOP Instance UID: compared with the stored one only inside its own group;
    from another group it is refused without a word about what is stored."""
    study_group = Study.objects.filter(series__instances=existing).values_list("group_id", flat=True).first()
    if study_group != _group_id(group):
        uid = existing.sop_instance_uid
        return StoreResult(REJECTED, uid, other_group_reason("SOPInstanceUID", uid), None, path,
                           other_group=True)
    return _compare_existing(existing, parsed, path)


def _store_parsed(
    parsed: ParsedInstance, *, data: bytes, source: str, user: Any, group: Any, path: str
) -> StoreResult:
    uid = parsed.sop_instance_uid
    resolved_group = _resolve_group(group)
    existing = Instance.objects.filter(sop_instance_uid=uid).first()
    if existing is not None:
        return _existing_in_group(existing, parsed, resolved_group, path)
    compress_later = compression_deferred() and compression_applies(parsed)
    if compress_later:
        # Deferred compression: keep what arrived now; the worker re-encodes it later
        # (``medvault.archive.compression``) and swaps the blob once verified.
        blob, stored_ts = _as_received(parsed, data), parsed.received_transfer_syntax_uid
    else:
        blob, stored_ts = storage_bytes(parsed, data)
    # Durable before visible: the blob is on disk before the row that points at it commits.
    key = blob_store().put(blob)
    try:
        with transaction.atomic():
            instance = _index(
                parsed,
                blob_key=key,
                stored_ts=stored_ts,
                received_bytes=len(data),
                stored_bytes=len(blob),
                source=source,
                user=user,
                group=resolved_group,
                compress_later=compress_later,
            )
    except _AlreadyStored:
        # A concurrent writer won; the blob we wrote is either shared (same bytes) or an
        # orphan for ``medvault scrub`` — never deleted here, as another row may use it.
        existing = Instance.objects.get(sop_instance_uid=uid)
        return _existing_in_group(existing, parsed, resolved_group, path)
    except _IndexRejected as exc:
        return StoreResult(REJECTED, uid, exc.reason, None, path, other_group=exc.other_group)
    return StoreResult(STORED, uid, None, instance, path)


# --- public services -------------------------------------------------------------------


def _limits() -> dict[str, int]:
    return {
        "max_image_pixels": int(settings.MEDVAULT_MAX_IMAGE_PIXELS),
        "max_decoded_bytes": int(settings.MEDVAULT_MAX_UPLOAD_BYTES),
    }


def instance_store(
    *,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    path: str = "",
    transfer_syntax_uid: str | None = None,
) -> StoreResult:
    """Validate, de-duplicate, compress and index one DICOM instance.

    Parameters
    ----------
    data
        A DICOM Part 10 file, or a bare data set when ``transfer_syntax_uid`` says how it is
        encoded (e.g. the accepted presentation context of a C-STORE).
    source
        Which door it came through: "cli", "web", "stow", "c-store".
    user, group
        Who uploaded it, and the group (a ``Group`` or its name) it is stored into: the
        group's namespace. The door decides the group (``permissions.ingest_group`` for
        users, the AE's group for C-STORE, ``--group`` for the CLI, the study's group for
        analysis exports); here a UID that another group holds is refused
        (``other_group``), and patients are found per group.
    path
        A display name for the result only; it never becomes a filesystem path.
    """
    parsed = instance_parse(data=data, transfer_syntax_uid=transfer_syntax_uid, path=path)
    if isinstance(parsed, StoreResult):
        return parsed
    return parsed_store(parsed=parsed, data=data, source=source, user=user, group=group, path=path)


def instance_parse(
    *, data: bytes, transfer_syntax_uid: str | None = None, path: str = ""
) -> ParsedInstance | StoreResult:
    """The first half of ``instance_store``: the parsed instance, or the rejection.

    For callers that must look at the data set before it is stored (STOW-RS checks the
    study in its URL) without reading it twice.
    """
    max_depth, max_elements = structure_limits()
    try:
        parsed = parse_instance(data, transfer_syntax_uid=transfer_syntax_uid, **_limits())
    except DicomRejected as exc:
        reason = exc.reason
        if reason == NESTED_TOO_DEEPLY:
            # pydicom reads and converts sequences recursively: a data set nested hundreds of
            # levels deep exhausts the stack before the structure check below can run.
            reason = NESTING_REASON.format(limit=max_depth)
        return StoreResult(REJECTED, exc.sop_instance_uid, reason, None, path)
    try:
        dataset_structure_check(parsed.dataset, max_depth=max_depth, max_elements=max_elements)
    except StructureTooLarge as exc:
        return StoreResult(REJECTED, parsed.sop_instance_uid, str(exc), None, path)
    return parsed


def structure_limits() -> tuple[int, int]:
    """(most levels of sequence nesting, most elements) one instance may have."""
    return (
        int(getattr(settings, "MEDVAULT_DICOM_MAX_DEPTH", DEFAULT_MAX_DEPTH)),
        int(getattr(settings, "MEDVAULT_DICOM_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)),
    )


def parsed_store(
    *,
    parsed: ParsedInstance,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    path: str = "",
) -> StoreResult:
    """The second half of ``instance_store``, for an instance from ``instance_parse``."""
    return _store_parsed(parsed, data=data, source=source, user=user, group=group, path=path)


def image_store(
    *,
    data: bytes,
    patient_id: str,
    patient_name: str,
    modality: str,
    study_description: str = "",
    body_part: str = "",
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    path: str = "",
) -> StoreResult:
    """Wrap a PNG/JPEG as a Secondary Capture instance and store it with ``instance_store``."""
    try:
        ds = image_to_secondary_capture(
            data,
            patient_id=patient_id,
            patient_name=patient_name,
            modality=modality,
            study_description=study_description,
            body_part=body_part,
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            max_image_pixels=int(settings.MEDVAULT_MAX_IMAGE_PIXELS),
        )
    except DicomRejected as exc:
        return StoreResult(REJECTED, None, exc.reason, None, path)
    return instance_store(
        data=dataset_to_part10(ds), source=source, user=user, group=group, path=path
    )


def zip_limits() -> ZipLimits:
    return ZipLimits(
        max_total_bytes=int(settings.MEDVAULT_ZIP_MAX_TOTAL_BYTES),
        max_ratio=int(settings.MEDVAULT_ZIP_MAX_RATIO),
        max_members=int(settings.MEDVAULT_ZIP_MAX_MEMBERS),
    )


def zip_store(
    *,
    source_file: IO[bytes],
    name: str,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    image_fields: dict[str, Any] | None = None,
) -> Iterator[StoreResult]:
    """Store every member of a ZIP archive, yielding one result per member as it goes.

    A ZIP that breaks a limit (``../`` names, too many members, too large, ratio) yields a
    single rejected result for the archive and stores nothing of it.
    """
    if image_fields is not None:
        # The pictures of one archive form one study with one series.
        image_fields = dict(image_fields)
        image_fields.setdefault("study_instance_uid", generate_uid())
        image_fields.setdefault("series_instance_uid", generate_uid())
    try:
        members = iter_zip_members(source_file, zip_limits())
        for member_name, member in members:
            display = f"{name}:{member_name}"
            if is_zip(member[:4]):
                yield StoreResult(REJECTED, None, "nested ZIP archives are not unpacked", None, display)
                continue
            yield from upload_store(
                name=display,
                data=member,
                source=source,
                user=user,
                group=group,
                image_fields=image_fields,
                _allow_zip=False,
            )
    except ZipRejected as exc:
        yield StoreResult(REJECTED, None, exc.reason, None, name)


def upload_store(
    *,
    name: str,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    image_fields: dict[str, Any] | None = None,
    _allow_zip: bool = True,
) -> list[StoreResult]:
    """Store one uploaded file of any accepted kind: DICOM, ZIP or PNG/JPEG.

    ``image_fields`` (patient_id, patient_name, modality[, study_description, body_part,
    study_instance_uid, series_instance_uid]) is required for PNG/JPEG.
    """
    if len(data) > int(settings.MEDVAULT_MAX_UPLOAD_BYTES):
        return [StoreResult(REJECTED, None, "file is larger than MEDVAULT_MAX_UPLOAD_BYTES", None, name)]
    if _allow_zip and is_zip(data[:4]):
        return list(
            zip_store(
                source_file=BytesIO(data),
                name=name,
                source=source,
                user=user,
                group=group,
                image_fields=image_fields,
            )
        )
    if is_image(data[:8]):
        fields = image_fields or {}
        missing = [k for k in ("patient_id", "patient_name", "modality") if not str(fields.get(k, "")).strip()]
        if missing:
            return [
                StoreResult(
                    REJECTED,
                    None,
                    "a PNG/JPEG image needs " + ", ".join(missing) + " (e.g. --patient-id, "
                    "--patient-name, --modality)",
                    None,
                    name,
                )
            ]
        allowed = {
            "patient_id", "patient_name", "modality", "study_description", "body_part",
            "study_instance_uid", "series_instance_uid",
        }
        kwargs = {k: v for k, v in fields.items() if k in allowed and v is not None}
        return [image_store(data=data, source=source, user=user, group=group, path=name, **kwargs)]
    return [instance_store(data=data, source=source, user=user, group=group, path=name)]


_blob_referrers: list[Callable[[], Any]] = []


def register_blob_referrer(fn: Callable[[], Any]) -> None:
    """Let another app declare blobs it points to: ``fn()`` yields ``(key, label)`` pairs.

    ``blob_scrub`` counts them as referenced (e.g. the analysis app's heat-map overlays), so
    they are checked for corruption and never reported or deleted as orphans.
    """
    if fn not in _blob_referrers:
        _blob_referrers.append(fn)


def _referenced_elsewhere(key: str) -> bool:
    return any(key == ref for fn in _blob_referrers for ref, _label in fn())


def blob_scrub(*, repair: bool = False, min_age_s: float = 3600.0) -> dict[str, Any]:
    """Re-hash every blob and compare the store with the index.

    Returns ``missing`` (rows whose blob is absent), ``corrupt`` (blobs whose bytes no
    longer hash to their key), ``orphans`` (blobs no row points to, older than
    ``min_age_s`` so that an ingest in flight is not counted), and ``deleted`` (orphans
    removed when ``repair``). Nothing a row points to is ever deleted.
    """
    from medvault.core.blobs import BlobCorrupt, BlobNotFound, blob_verify

    store = blob_store()
    referenced: dict[str, list[str]] = {}
    for key, uid in Instance.objects.values_list("blob_key", "sop_instance_uid").iterator():
        referenced.setdefault(key, []).append(uid)
    for referrer in list(_blob_referrers):
        for key, label in referrer():
            referenced.setdefault(key, []).append(label)
    report: dict[str, Any] = {
        "rows_checked": sum(len(v) for v in referenced.values()),
        "blobs_checked": 0,
        "missing": [],
        "corrupt": [],
        "orphans": [],
        "young_unreferenced": 0,
        "deleted": [],
    }
    seen: set[str] = set()
    for key in store.iter_keys():
        seen.add(key)
        report["blobs_checked"] += 1
        if key not in referenced:
            age = getattr(store, "age_seconds", None)
            try:
                young = age is not None and age(key) < min_age_s
            except BlobNotFound:
                continue
            if young:
                report["young_unreferenced"] += 1
                continue
            report["orphans"].append(key)
            # A backend that cannot tell a blob's age may hold the blob of an ingest that
            # has not committed yet: delete only when the operator asked for --min-age 0.
            aged = age is not None or min_age_s <= 0
            # Re-check at delete time: a row may have committed since the snapshot above.
            # The referrers first, then the rows: a compression worker records its new key
            # (a referrer) before it writes the blob and keeps it recorded until after the
            # row points at it, so one of the two checks sees every live blob in this order.
            if (
                repair
                and aged
                and not _referenced_elsewhere(key)
                and not Instance.objects.filter(blob_key=key).exists()
            ):
                store.delete(key)
                report["deleted"].append(key)
            continue
        try:
            data = store.get(key)
        except BlobNotFound:
            continue
        try:
            blob_verify(key, data)
        except BlobCorrupt:
            report["corrupt"].append({"blob_key": key, "sop_instance_uids": referenced[key]})
    for key, uids in referenced.items():
        if key not in seen and not store.exists(key):
            report["missing"].extend({"blob_key": key, "sop_instance_uid": uid} for uid in uids)
    if repair and hasattr(store, "clean_temporary"):
        report["temporary_files_removed"] = store.clean_temporary(min_age_s)
    return report
