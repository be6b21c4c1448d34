"""DIMSE status codes MedVault answers with (PS3.7 annex C, PS3.4 B.2.3 and C.4)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01  # C-FIND: optional keys not supported
    CANCEL = 0xFE00
    # General failures (PS3.7 C.5)
    DUPLICATE_SOP_INSTANCE = 0x0111
    NOT_AUTHORISED = 0x0124
    PROCESSING_FAILURE = 0x0110
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
