"""``medvault predict --model lung-ct|brain-mri FILE...``: analyse files without storing them.

Prints one JSON line per file: path, call ("abnormal" | "normal" | "indeterminate"; null when
refused), call_reason, label, probabilities, refused, reason, latency_ms (plus tumour_detected
for brain-mri). Reads DICOM, PNG and JPEG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def read_input(path: Path):  # type: ignore[no-untyped-def]
    """DICOM (by content) -> pydicom Dataset; PNG/JPEG -> uint8 numpy array."""
    import numpy as np
    import pydicom
    from PIL import Image, UnidentifiedImageError

    data = path.read_bytes()
    if len(data) >= 132 and data[128:132] == b"DICM":
        return pydicom.dcmread(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except (UnidentifiedImageError, OSError):
        pass
    try:  # raw DICOM dataset without the Part 10 preamble
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise ValueError(f"not a DICOM, PNG or JPEG file: {exc}") from exc
    if "PixelData" not in ds or "Rows" not in ds:
        raise ValueError("not a DICOM, PNG or JPEG file")
    return ds


class Command(BaseCommand):
    help = "Analyse image files with a shipped model without storing anything (JSON lines)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--model", required=True, choices=["lung-ct", "brain-mri"])
        parser.add_argument("--models-dir", type=Path, default=None)
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args, **opts):  # type: ignore[no-untyped-def]
        from medvault.core.ml import ModelError, analyse, load_model

        models_dir = opts["models_dir"]
        if models_dir is None:
            from medvault.analysis.conf import models_dir as configured_models_dir

            models_dir = configured_models_dir()
        try:
            model = load_model(opts["model"], models_dir)
        except ModelError as exc:
            raise CommandError(str(exc)) from exc
        failures = 0
        for path in opts["files"]:
            rec: dict[str, Any] = {"path": str(path)}
            try:
                out = analyse(model, read_input(path))
                rec.update(
                    call=out.call,
                    call_reason=out.call_reason,
                    label=out.label,
                    probabilities=out.probabilities,
                    refused=out.refused,
                    reason=out.reason,
                    latency_ms=round(out.latency_ms, 2),
                )
                if "tumour_detected" in out.extra:
                    rec["tumour_detected"] = out.extra["tumour_detected"]
            except Exception as exc:  # one bad file must not stop the batch
                failures += 1
                rec.update(
                    call=None,
                    call_reason="",
                    label=None,
                    probabilities={},
                    refused=True,
                    reason=f"error: {exc}",
                    latency_ms=None,
                )
            self.stdout.write(json.dumps(rec))
