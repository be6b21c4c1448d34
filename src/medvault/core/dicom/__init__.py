"""DICOM parsing, validation, DICOM JSON, PNG/JPEG wrapping and safe ZIP reading (no Django)."""

from medvault.core.dicom.parse import (
    DicomRejected,
    ParsedInstance,
    dataset_to_part10,
    parse_instance,
    pixel_sha256,
)

__all__ = ["DicomRejected", "ParsedInstance", "dataset_to_part10", "parse_instance", "pixel_sha256"]
