"""The index rows of one new instance: its patient, study and series found or created, the
counts kept, and the instance row itself, all inside the caller's transaction.

A UID that another group holds, or a study/series UID stored under another patient or
study, refuses the instance (``IndexRejected``); a concurrent writer of the same SOP
Instance UID shows as ``AlreadyStored``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F
from pydicom.dataset import Dataset

from medvault.archive.coercion import date_value, int_value, person_name, text_value
from medvault.archive.models import CompressionTask, Instance, Patient, PatientConflict, Series, Study
from medvault.archive.outcomes import RejectReason
from medvault.core.dicom.parse import ParsedInstance

_stored_hooks: list[Callable[[Instance], None]] = []


def register_stored_hook(fn: Callable[[Instance], None]) -> None:
    """Run ``fn(instance)`` via ``transaction.on_commit`` after each NEW instance is stored."""
    if fn not in _stored_hooks:
        _stored_hooks.append(fn)


class AlreadyStored(Exception):
    """Another writer inserted the same SOP Instance UID first."""


class IndexRejected(Exception):
    def __init__(self, reason: str, reject: RejectReason) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reject = reject


def other_group_reason(what: str, uid: str) -> str:
    """The refusal of a UID that another group holds. It names only what the sender sent:
    never the other group, its patient, study or anything stored under the UID."""
    return (f"{what} {uid} is in use outside the group this upload goes to; not stored "
            "(UIDs are unique in the archive; ask an administrator)")


def _other_group(what: str, uid: str) -> IndexRejected:
    return IndexRejected(other_group_reason(what, uid), RejectReason.OTHER_GROUP)


def group_id(group: Group | None) -> int | None:
    return group.pk if group is not None else None


def _user_or_none(user: Any) -> Any:
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None):
        return user
    return None


def _patient_identity(ds: Dataset) -> dict[str, str]:
    return {
        "patient_id": text_value(ds, "PatientID", 64),
        "issuer_of_patient_id": text_value(ds, "IssuerOfPatientID", 64),
    }


def _patient_received(ds: Dataset) -> dict[str, Any]:
    return {
        "patient_name": person_name(ds.get("PatientName"))[:324],
        "patient_birth_date": date_value(ds.get("PatientBirthDate")),
        "patient_sex": text_value(ds, "PatientSex", 16),
    }


def _patient_conflicts(patient: Patient, ds: Dataset) -> list[PatientConflict]:
    """Demographics that differ from the stored patient's (recorded; the patient is kept)."""
    conflicts: list[PatientConflict] = []
    for field, value in _patient_received(ds).items():
        stored = getattr(patient, field)
        if field == "patient_name":
            stored = person_name(stored)
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
        patient, created = Patient.objects.filter(**identity).order_by("pk")[0], False
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
    return found[0] if _series_matches(found[0], ds, group) else None


def _series_matches(series: Series, ds: Dataset, group: Group | None) -> bool:
    """True when ``series`` (its study and patient loaded) is where ``ds`` belongs."""
    patient = series.study.patient
    identity = _patient_identity(ds)
    return not (
        series.study.group_id != group_id(group)
        or series.study.study_instance_uid != str(ds.StudyInstanceUID)
        or patient.patient_id != identity["patient_id"]
        or patient.issuer_of_patient_id != identity["issuer_of_patient_id"]
    )


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
            "study_date": date_value(ds.get("StudyDate")),
            "study_time": text_value(ds, "StudyTime", 32),
            "accession_number": text_value(ds, "AccessionNumber", 64),
            "study_description": text_value(ds, "StudyDescription", 128),
            "study_id": text_value(ds, "StudyID", 16),
            "referring_physician_name": person_name(ds.get("ReferringPhysicianName"))[:324],
            "group": group,
        },
    )
    if study.group_id != group_id(group):
        raise _other_group("StudyInstanceUID", uid)
    if study.patient_id != patient.pk and not _same_identity(study.patient, patient):
        # Nothing of the stored patient is named: the sender may not see that study.
        raise IndexRejected(
            f"StudyInstanceUID {uid} is already stored for another patient; patients are "
            "never merged",
            RejectReason.HIERARCHY_MISMATCH,
        )
    return study


def _series_for(ds: Dataset, study: Study) -> tuple[Series, bool]:
    uid = str(ds.SeriesInstanceUID)
    series, created = Series.objects.get_or_create(
        series_instance_uid=uid,
        defaults={
            "study": study,
            "modality": text_value(ds, "Modality", 16),
            "series_number": int_value(ds.get("SeriesNumber")),
            "series_description": text_value(ds, "SeriesDescription", 128),
            "body_part_examined": text_value(ds, "BodyPartExamined", 64),
        },
    )
    if series.study_id != study.pk:
        if series.study.group_id != study.group_id:
            raise _other_group("SeriesInstanceUID", uid)
        raise IndexRejected(
            f"SeriesInstanceUID {uid} is already stored in another study", RejectReason.HIERARCHY_MISMATCH
        )
    return series, created


def index_instance(
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
    known: dict[str, Series] | None = None,
) -> Instance:
    """Index one instance inside the caller's transaction.

    ``known`` maps SeriesInstanceUID to series rows (study and patient loaded) that this
    transaction has already indexed instances into and that are committed with it (a batch:
    ``ingest.parsed_store_batch``); the series row is then not read again.
    """
    ds = parsed.dataset
    cached = known.get(str(ds.SeriesInstanceUID)) if known is not None else None
    series = cached if cached is not None and _series_matches(cached, ds, group) else _known_series(ds, group)
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
            instance_number=int_value(ds.get("InstanceNumber")),
            rows=int_value(ds.get("Rows")),
            columns=int_value(ds.get("Columns")),
            bits_allocated=int_value(ds.get("BitsAllocated")),
            number_of_frames=int_value(ds.get("NumberOfFrames")) or 1,
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
        raise AlreadyStored() from None
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
        transaction.on_commit(partial(hook, instance))
    return instance

