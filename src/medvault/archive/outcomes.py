"""What storing one instance came to: a status and, for a refusal, its kind.

The doors derive what they answer from these enums (DIMSE status, STOW-RS FailureReason),
never from the words of ``StoreResult.reason``, which is for people and may be reworded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medvault.archive.models import Instance


class StoreStatus(StrEnum):
    STORED = "stored"  # a new instance
    DUPLICATE = "duplicate"  # the same instance was already stored; nothing changed
    REJECTED = "rejected"  # not stored; ``StoreResult.reject`` says why


class RejectReason(Enum):
    """Each kind of refusal the archive produces."""

    CONFLICT = "conflict"  # the SOP Instance UID is stored with other pixels or attributes
    OTHER_GROUP = "other-group"  # a UID in it belongs to another group (not named)
    HIERARCHY_MISMATCH = "hierarchy-mismatch"  # its study/series UID is stored under another patient/study
    INVALID = "invalid"  # not an instance that can be read and understood
    NOT_STORAGE_CLASS = "not-storage-class"  # a SOP class that is no object an archive keeps
    TOO_LARGE = "too-large"  # over a size limit (upload, pixels, decoded bytes)
    STRUCTURE_TOO_LARGE = "structure-too-large"  # nests sequences too deeply / too many elements
    PROCESSING_FAILURE = "processing-failure"  # an error while storing it, not a fault of the input
    ZIP_REFUSED = "zip-refused"  # a ZIP that breaks a limit or cannot be read; none of it stored
    NESTED_ZIP = "nested-zip"  # a ZIP inside a ZIP is not unpacked
    IMAGE_FIELDS_MISSING = "image-fields-missing"  # a PNG/JPEG without the patient fields it needs
    UNREADABLE_FILE = "unreadable-file"  # the file could not be read from disk


@dataclass(frozen=True)
class StoreResult:
    status: StoreStatus
    sop_instance_uid: str | None
    reason: str | None  # in words, for people; never matched on
    instance: Instance | None  # the stored (or already present) row; None when rejected
    path: str = ""  # what the caller called the input (file name / zip member); display only
    reject: RejectReason | None = None  # set exactly when rejected

    def __post_init__(self) -> None:
        rejected = self.status is StoreStatus.REJECTED
        if rejected != (self.reject is not None) or rejected != (self.instance is None):
            raise ValueError(f"a {self.status} result with reject={self.reject}, instance={self.instance}")

    @classmethod
    def refused(
        cls, reject: RejectReason, reason: str, *, sop_instance_uid: str | None = None, path: str = ""
    ) -> StoreResult:
        return cls(StoreStatus.REJECTED, sop_instance_uid, reason, None, path, reject)

    def as_dict(self) -> dict[str, Any]:
        """The JSON line the ingest command prints."""
        return {
            "path": self.path,
            "status": str(self.status),
            "sop_instance_uid": self.sop_instance_uid,
            "reason": self.reason,
            "reject": self.reject.value if self.reject is not None else None,
        }
