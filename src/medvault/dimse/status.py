"""DIMSE status codes MedVault answers with (PS3.7 annex C, PS3.4 B.2.3 and C.4)."""

from __future__ import annotations

from enum import IntEnum

from medvault.archive.outcomes import RejectReason


class Status(IntEnum):
    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01  # C-FIND: optional keys not supported
    CANCEL = 0xFE00
    # General failures (PS3.7 C.5)
    DUPLICATE_SOP_INSTANCE = 0x0111
    NOT_AUTHORISED = 0x0124
    PROCESSING_FAILURE = 0x0110
    # N-ACTION (PS3.7 10.1.4.1.10), Storage Commitment (PS3.4 J.3.2)
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_ARGUMENT_VALUE = 0x0115
    NO_SUCH_SOP_CLASS = 0x0118
    NO_SUCH_ACTION = 0x0123
    RESOURCE_LIMITATION = 0x0213
    # C-STORE (PS3.4 B.2.3)
    STORE_OUT_OF_RESOURCES = 0xA700
    STORE_DATASET_MISMATCH = 0xA900
    STORE_CANNOT_UNDERSTAND = 0xC000
    # Query/Retrieve (PS3.4 C.4)
    QR_OUT_OF_RESOURCES = 0xA700
    QR_IDENTIFIER_MISMATCH = 0xA900
    QR_UNABLE_TO_PROCESS = 0xC000
    MOVE_DESTINATION_UNKNOWN = 0xA801
    SUBOPS_COMPLETE_WITH_FAILURES = 0xB000


# The C-STORE status of each kind of refusal. Every RejectReason is listed (a test checks);
# the words of ``StoreResult.reason`` go into the Error Comment only.
STORE_FAILURE: dict[RejectReason, Status] = {
    RejectReason.CONFLICT: Status.DUPLICATE_SOP_INSTANCE,
    RejectReason.OTHER_GROUP: Status.NOT_AUTHORISED,
    RejectReason.PROCESSING_FAILURE: Status.PROCESSING_FAILURE,
    RejectReason.HIERARCHY_MISMATCH: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.INVALID: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.NOT_STORAGE_CLASS: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.TOO_LARGE: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.STRUCTURE_TOO_LARGE: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.ZIP_REFUSED: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.NESTED_ZIP: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.IMAGE_FIELDS_MISSING: Status.STORE_CANNOT_UNDERSTAND,
    RejectReason.UNREADABLE_FILE: Status.STORE_CANNOT_UNDERSTAND,
}
