"""Uploaded files of every accepted kind: DICOM, ZIP archives (member by member) and
PNG/JPEG pictures (wrapped as Secondary Capture), each stored with ``instance_store``."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from typing import IO, Any

from django.contrib.auth.models import Group
from pydicom.uid import generate_uid

from medvault.archive import conf
from medvault.archive.ingest import instance_store, parse_refusal
from medvault.archive.outcomes import RejectReason, StoreResult
from medvault.core.dicom.parse import DicomRejected, dataset_to_part10
from medvault.core.dicom.secondary_capture import image_to_secondary_capture, is_image
from medvault.core.dicom.zipsafe import ZipRejected, is_zip, iter_zip_members


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
    defer_compression: bool | None = None,
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
            max_image_pixels=conf.max_image_pixels(),
        )
    except DicomRejected as exc:
        return StoreResult.refused(parse_refusal(exc), exc.reason, path=path)
    return instance_store(
        data=dataset_to_part10(ds), source=source, user=user, group=group, path=path,
        defer_compression=defer_compression,
    )


def zip_store(
    *,
    source_file: IO[bytes],
    name: str,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    image_fields: dict[str, Any] | None = None,
    defer_compression: bool | None = None,
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
        members = iter_zip_members(source_file, conf.zip_limits())
        for member_name, member in members:
            display = f"{name}:{member_name}"
            if is_zip(member[:4]):
                yield StoreResult.refused(
                    RejectReason.NESTED_ZIP, "nested ZIP archives are not unpacked", path=display
                )
                continue
            yield from upload_store(
                name=display,
                data=member,
                source=source,
                user=user,
                group=group,
                image_fields=image_fields,
                defer_compression=defer_compression,
                _allow_zip=False,
            )
    except ZipRejected as exc:
        yield StoreResult.refused(RejectReason.ZIP_REFUSED, exc.reason, path=name)


def upload_store(
    *,
    name: str,
    data: bytes,
    source: str,
    user: Any = None,
    group: Group | str | None = None,
    image_fields: dict[str, Any] | None = None,
    defer_compression: bool | None = None,
    _allow_zip: bool = True,
) -> list[StoreResult]:
    """Store one uploaded file of any accepted kind: DICOM, ZIP or PNG/JPEG.

    ``image_fields`` (patient_id, patient_name, modality[, study_description, body_part,
    study_instance_uid, series_instance_uid]) is required for PNG/JPEG.
    """
    if len(data) > conf.max_upload_bytes():
        return [StoreResult.refused(RejectReason.TOO_LARGE, "file is larger than MEDVAULT_MAX_UPLOAD_BYTES", path=name)]
    if _allow_zip and is_zip(data[:4]):
        return list(
            zip_store(
                source_file=BytesIO(data),
                name=name,
                source=source,
                user=user,
                group=group,
                image_fields=image_fields,
                defer_compression=defer_compression,
            )
        )
    if is_image(data[:8]):
        fields = image_fields or {}
        missing = [k for k in ("patient_id", "patient_name", "modality") if not str(fields.get(k, "")).strip()]
        if missing:
            return [
                StoreResult.refused(
                    RejectReason.IMAGE_FIELDS_MISSING,
                    "a PNG/JPEG image needs " + ", ".join(missing) + " (e.g. --patient-id, "
                    "--patient-name, --modality)",
                    path=name,
                )
            ]
        allowed = {
            "patient_id", "patient_name", "modality", "study_description", "body_part",
            "study_instance_uid", "series_instance_uid",
        }
        kwargs = {k: v for k, v in fields.items() if k in allowed and v is not None}
        return [
            image_store(
                data=data, source=source, user=user, group=group, path=name,
                defer_compression=defer_compression, **kwargs,
            )
        ]
    return [
        instance_store(
            data=data, source=source, user=user, group=group, path=name, defer_compression=defer_compression
        )
    ]
