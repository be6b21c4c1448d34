"""The form an instance is kept in: re-encoded with ``MEDVAULT_COMPRESSION`` when that is
lossless and smaller, else the bytes as received."""

from __future__ import annotations

import logging

from medvault.archive import conf
from medvault.core.codecs import CODECS, recompress
from medvault.core.dicom.parse import ParsedInstance, dataset_to_part10, splice_encapsulated_pixels

logger = logging.getLogger(__name__)

NATIVE_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def compression_applies(parsed: ParsedInstance) -> bool:
    """True when ``MEDVAULT_COMPRESSION`` would re-encode this instance's pixels.

    Lossy input, pixels that do not reproduce the stored bytes exactly and instances
    already in the target syntax are never re-encoded.
    """
    target = CODECS.get(conf.compression_codec())
    return (
        target is not None
        and parsed.pixels is not None
        and parsed.pixels_exact
        and not parsed.lossy
        and parsed.received_transfer_syntax_uid != target.transfer_syntax_uid
    )


def as_received(parsed: ParsedInstance, data: bytes) -> bytes:
    """The input as a Part 10 file: itself when it is one, else the data set written as one."""
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
    codec = conf.compression_codec()
    if compression_applies(parsed):
        target = CODECS[codec]
        assert parsed.pixels is not None
        new, why = recompress(
            parsed.dataset, parsed.pixels, codec, verify=verify, jpegxl_effort=conf.jpegxl_effort(),
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
    return as_received(parsed, data), ts
