"""A SOP Instance UID that is already stored: the same instance again (a duplicate, kept
once), or other content under the same UID (a conflict, refused; the stored one is kept)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from pydicom.datadict import keyword_for_tag

from medvault.archive.indexing import group_id, other_group_reason
from medvault.archive.models import Instance, Study
from medvault.archive.outcomes import RejectReason, StoreResult, StoreStatus
from medvault.core.dicom.parse import ParsedInstance

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

# The words of a conflict; what it is, is ``RejectReason.CONFLICT``.
OTHER_PIXELS = "SOP Instance UID already stored with different pixel data"
OTHER_METADATA = "SOP Instance UID already stored with different metadata ({attributes})"
STORED_KEPT = "; the stored instance is kept"


def differing_attributes(
    stored: dict[str, Any], received: dict[str, Any], ignore: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Keywords (or tags) of the attributes whose DICOM JSON differs, VRs aside."""
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
        return StoreResult(
            StoreStatus.DUPLICATE, uid, "already stored with the same pixels and metadata", existing, path
        )
    if existing.pixel_sha256 != parsed.pixel_sha256:
        reason = OTHER_PIXELS
    else:
        diff = differing_attributes(existing.metadata, parsed.metadata, SYNTAX_DEPENDENT_TAGS)
        if not diff:
            # The same decoded pixels and the same attributes: this instance in another
            # transfer syntax (big endian, another codec) is the instance already stored.
            return StoreResult(
                StoreStatus.DUPLICATE, uid, "already stored: the same instance in another transfer syntax",
                existing, path,
            )
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        reason = OTHER_METADATA.format(attributes=shown or "unknown")
    return StoreResult.refused(RejectReason.CONFLICT, reason + STORED_KEPT, sop_instance_uid=uid, path=path)


def existing_in_group(existing: Instance, parsed: ParsedInstance, group: Group | None, path: str) -> StoreResult:
    """A re-sent SOP Instance UID: compared with the stored one only inside its own group;
    from another group it is refused without a word about what is stored."""
    study_group = Study.objects.filter(series__instances=existing).values_list("group_id", flat=True).first()
    if study_group != group_id(group):
        uid = existing.sop_instance_uid
        return StoreResult.refused(
            RejectReason.OTHER_GROUP, other_group_reason("SOPInstanceUID", uid), sop_instance_uid=uid, path=path
        )
    return _compare_existing(existing, parsed, path)
