"""Archive reads: stored instances back as data sets, Part 10 bytes or pixel arrays."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from django.db.models import Count, QuerySet, Sum
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medvault.archive.blobstore import blob_store
from medvault.archive.models import Instance, Patient, PatientConflict, Series, Study
from medvault.core.blobs import BlobNotFound, blob_verify
from medvault.core.codecs import CODECS, decode_frame, decode_pixels, decompress_dataset, recompress
from medvault.core.dicom.parse import dataset_to_part10, splice_native_pixels

# Syntaxes we can produce on request besides the stored one: native explicit little endian
# (for files, WADO-RS and export) and, for a network peer that accepted only those, native
# implicit little endian and the lossless codecs we can encode (decode, re-encode, verify).
TRANSCODABLE = {ExplicitVRLittleEndian}
NATIVE_OUT = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
LOSSLESS_OUT = {codec.transfer_syntax_uid: name for name, codec in CODECS.items() if name != "jpegxl"}


class TransferSyntaxUnavailable(ValueError):
    """The instance cannot be returned in the requested transfer syntax."""


def instance_blob(*, instance: Instance) -> bytes:
    """The stored Part 10 bytes, exactly as kept in the blob store.

    Deferred compression may swap the blob between loading ``instance`` and reading it; then
    the old blob is gone, the row is read again (``instance`` is updated in place, syntax
    and size included) and the new blob returned.
    """
    store = blob_store()
    try:
        return store.get(instance.blob_key)
    except BlobNotFound:
        fresh = (
            Instance.objects.filter(pk=instance.pk)
            .values("blob_key", "transfer_syntax_uid", "stored_bytes")
            .first()
        )
        if fresh is None or fresh["blob_key"] == instance.blob_key:
            raise
        instance.blob_key = fresh["blob_key"]
        instance.transfer_syntax_uid = fresh["transfer_syntax_uid"]
        instance.stored_bytes = fresh["stored_bytes"]
        return store.get(instance.blob_key)


def instance_blob_verified(*, instance: Instance) -> bytes:
    """``instance_blob``, checked against the content address the archive recorded.

    Raises ``BlobNotFound`` when the blob is absent and ``BlobCorrupt`` when its bytes no
    longer hash to the row's key (the check ``blob_scrub`` makes). Nothing is altered.
    """
    data = instance_blob(instance=instance)
    return blob_verify(instance.blob_key, data)


def _stored_dataset(instance: Instance) -> Dataset:
    return pydicom.dcmread(BytesIO(instance_blob(instance=instance)))


def instance_dataset(*, instance: Instance, transfer_syntax_uid: str | None = None) -> Dataset:
    """The instance as a pydicom data set, in the stored syntax unless one is requested.

    ``transfer_syntax_uid="1.2.840.10008.1.2.1"`` returns native pixel data (decompressed);
    any other syntax than the stored one raises ``TransferSyntaxUnavailable``.
    """
    ds = _stored_dataset(instance)  # first: it may find the row's syntax changed
    if transfer_syntax_uid in (None, "", instance.transfer_syntax_uid):
        return ds
    if transfer_syntax_uid not in TRANSCODABLE:
        raise TransferSyntaxUnavailable(
            f"transfer syntax {transfer_syntax_uid} is not available; stored as "
            f"{instance.transfer_syntax_uid}, or ask for {ExplicitVRLittleEndian}"
        )
    return decompress_dataset(ds)


def _converted(ds: Dataset) -> Dataset:
    """``ds`` with every element converted. A file whose data set is written in another
    encoding than its transfer syntax says is read by pydicom, which notices the mismatch;
    the network encoder would otherwise copy its raw elements, in the wrong encoding, into
    the stream."""
    # pydicom does not record that it switched, so every element is converted (a cost of
    # about a millisecond per thousand elements, small beside the network).
    for _element in ds.iterall():
        pass
    return ds


def instance_dataset_for_peer(*, instance: Instance, transfer_syntax_uid: str) -> Dataset:
    """The instance in a syntax a network peer accepted (C-GET, C-MOVE).

    The stored syntax as stored; native syntaxes decompressed (the peer's association
    converts explicit to implicit VR); a lossless codec's syntax by decoding and re-encoding,
    verified pixel for pixel. Raises ``TransferSyntaxUnavailable`` when the codec cannot
    encode these pixels (a colour model or bit depth it does not take).
    """
    ds = _converted(_stored_dataset(instance))
    stored = str(ds.file_meta.TransferSyntaxUID)
    if transfer_syntax_uid == stored:
        return ds
    if transfer_syntax_uid not in LOSSLESS_OUT:
        if transfer_syntax_uid not in NATIVE_OUT:
            raise TransferSyntaxUnavailable(f"cannot send {transfer_syntax_uid}; stored as {stored}")
        return decompress_dataset(ds)
    if "PixelData" not in ds:
        return decompress_dataset(ds)
    native = decompress_dataset(ds)
    new, why = recompress(native, decode_pixels(native), LOSSLESS_OUT[transfer_syntax_uid])
    if new is None:
        raise TransferSyntaxUnavailable(f"cannot transcode to {transfer_syntax_uid}: {why}")
    return new


def instance_part10_bytes(*, instance: Instance, transfer_syntax_uid: str | None = None) -> bytes:
    """Part 10 bytes in the stored syntax (byte-exact blob) or transcoded on request."""
    data = instance_blob(instance=instance)  # first: it may find the row's syntax changed
    if transfer_syntax_uid in (None, "", instance.transfer_syntax_uid):
        return data
    if transfer_syntax_uid not in TRANSCODABLE:
        raise TransferSyntaxUnavailable(
            f"transfer syntax {transfer_syntax_uid} is not available; stored as "
            f"{instance.transfer_syntax_uid}, or ask for {ExplicitVRLittleEndian}"
        )
    ds = pydicom.dcmread(BytesIO(data))
    spliced = _decompressed_splice(data, ds)
    if spliced is not None:
        return spliced
    return dataset_to_part10(decompress_dataset(ds))


def _decompressed_splice(data: bytes, ds: Dataset) -> bytes | None:
    """Explicit VR Little Endian bytes of an encapsulated grey-scale instance, made by
    swapping only its Pixel Data (re-serialising the whole data set cost more than
    decoding it); None when the instance is not of that kind."""
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    if not stored.is_encapsulated or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    if "PixelData" not in ds or int(ds.get("BitsAllocated", 0) or 0) not in (8, 16):
        return None
    pixels = decode_pixels(ds)
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    native = np.ascontiguousarray(pixels).tobytes()
    if len(native) % 2:
        native += b"\x00"
    # A new element in a new dict: FileMetaDataset(ds.file_meta) shares ds's elements, and
    # assigning TransferSyntaxUID changed the element in place, relabelling ds, whose
    # encapsulated pixels were then written out under a native syntax (issue 16).
    meta = FileMetaDataset(dict(ds.file_meta.items()))
    meta.add_new(0x00020010, "UI", ExplicitVRLittleEndian)
    return splice_native_pixels(data, meta, native, "OW" if int(ds.BitsAllocated) > 8 else "OB")


def instance_pixels(*, instance: Instance, frame: int | None = 0) -> np.ndarray:
    """Raw stored pixel values of one frame (``frame=None``: all frames).

    No modality LUT is applied; shape (rows, cols[, samples]) for one frame.
    """
    ds = _stored_dataset(instance)
    if frame is None:
        return decode_pixels(ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < frames:
        raise IndexError(f"frame {frame} out of range (instance has {frames})")
    return decode_frame(ds, frame)


def instance_get(*, sop_instance_uid: str) -> Instance | None:
    return Instance.objects.select_related("series__study__patient").filter(
        sop_instance_uid=sop_instance_uid
    ).first()


def patient_conflicts() -> QuerySet[PatientConflict]:
    return PatientConflict.objects.select_related("patient").order_by("created_at", "pk")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def archive_stats(*, conflicts_limit: int = 1000) -> dict[str, Any]:
    """Counts, byte totals and compression ratios (overall, per modality, per syntax).

    ``ratio_raw_to_stored`` = decoded pixel bytes / stored bytes (what the codec achieves);
    ``ratio_received_to_stored`` = bytes received / bytes kept (what the disk saves).
    """
    sums = {
        "instances": Count("pk"),
        "raw_pixel_bytes": Sum("raw_pixel_bytes"),
        "received_bytes": Sum("received_bytes"),
        "stored_bytes": Sum("stored_bytes"),
    }

    def row(values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {k: int(values.get(k) or 0) for k in sums}
        out["ratio_raw_to_stored"] = _ratio(out["raw_pixel_bytes"], out["stored_bytes"])
        out["ratio_received_to_stored"] = _ratio(out["received_bytes"], out["stored_bytes"])
        return out

    total = row(Instance.objects.aggregate(**sums))
    by_modality = {
        (values["series__modality"] or ""): row(values)
        for values in Instance.objects.values("series__modality").annotate(**sums).order_by("series__modality")
    }
    by_syntax = {}
    for values in Instance.objects.values("transfer_syntax_uid").annotate(**sums).order_by("transfer_syntax_uid"):
        uid = values["transfer_syntax_uid"]
        entry = row(values)
        entry["name"] = UID(uid).name if uid else ""
        by_syntax[uid] = entry
    conflicts = patient_conflicts()
    return {
        "patients": Patient.objects.count(),
        "studies": Study.objects.count(),
        "series": Series.objects.count(),
        "instances": total["instances"],
        "raw_pixel_bytes": total["raw_pixel_bytes"],
        "received_bytes": total["received_bytes"],
        "stored_bytes": total["stored_bytes"],
        "ratio_raw_to_stored": total["ratio_raw_to_stored"],
        "ratio_received_to_stored": total["ratio_received_to_stored"],
        "by_modality": by_modality,
        "by_transfer_syntax": by_syntax,
        "patient_conflict_count": conflicts.count(),
        "patient_conflicts": [
            {
                "patient_id": c.patient.patient_id,
                "issuer_of_patient_id": c.patient.issuer_of_patient_id,
                "sop_instance_uid": c.sop_instance_uid,
                "field": c.field,
                "stored_value": c.stored_value,
                "received_value": c.received_value,
                "created_at": c.created_at.isoformat(),
            }
            for c in conflicts[:conflicts_limit]
        ],
    }
