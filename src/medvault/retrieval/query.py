"""Turning what the user gave (an instance, an uploaded file) into a query vector."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from medvault.archive.models import Instance
from medvault.retrieval.errors import QueryError
from medvault.retrieval.selectors import instance_embedding

__all__ = ["QueryError", "QueryVector", "file_query_vector", "instance_query_vector", "read_query_file"]

log = logging.getLogger(__name__)

MAX_QUERY_PIXELS = 40_000_000


@dataclass(frozen=True)
class QueryVector:
    vector: np.ndarray
    model_name: str
    model_version: str
    label: str
    source: str  # "stored" (embedding from the database) or "computed"


def available_models() -> list[str]:
    from medvault.analysis.backends import models_available

    return list(models_available())


def _analyse(model_name: str, ds_or_image: Any) -> Any:
    from medvault.analysis.backends import ModelUnavailable, analysis_backend

    try:
        return analysis_backend().analyse(model_name, ds_or_image)
    except ModelUnavailable as exc:
        raise QueryError(str(exc), 503) from exc
    except Exception as exc:  # noqa: BLE001 - a model failure is the user's answer, logged
        log.exception("the %s model failed on a query image", model_name)
        raise QueryError(f"the {model_name} model could not analyse this image", 422) from exc


def _output_vector(output: Any, model_name: str) -> QueryVector:
    if getattr(output, "refused", False):
        raise QueryError(
            f"the {model_name} model does not apply to this image: {output.reason}", 422
        )
    if getattr(output, "embedding", None) is None:
        raise QueryError(f"the {model_name} model gave no embedding for this image", 422)
    vec = np.asarray(output.embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0:
        raise QueryError("the model gave an unusable embedding", 422)
    return QueryVector(vec / norm, output.model_name, output.model_version,
                       output.label or "", "computed")


def _check_model(model_name: str | None) -> list[str]:
    models = available_models()
    if model_name:
        from medvault.core.ml import MODEL_NAMES

        if model_name not in MODEL_NAMES:
            raise QueryError(f"unknown model {model_name!r}; known: {', '.join(MODEL_NAMES)}")
        if model_name not in models:
            raise QueryError(f"model {model_name!r} is not installed on this server", 503)
        return [model_name]
    if not models:
        raise QueryError("no analysis model is installed on this server", 503)
    return models


def _confidence(output: Any) -> float:
    probabilities = getattr(output, "probabilities", None) or {}
    try:
        return max(float(p) for p in probabilities.values())
    except (ValueError, TypeError):
        return 0.0


def _embed_any(candidates: list[str], ds_or_image: Any) -> QueryVector:
    """Embed with the candidate model that accepts the image most confidently.

    Every candidate runs (there are two models); refusals are skipped; among the models that
    accept the image, the one with the highest top probability wins.
    """
    if len(candidates) == 1:
        return _output_vector(_analyse(candidates[0], ds_or_image), candidates[0])
    refusals: list[str] = []
    accepted: list[tuple[float, QueryVector]] = []
    for name in candidates:
        try:
            output = _analyse(name, ds_or_image)
            accepted.append((_confidence(output), _output_vector(output, name)))
        except QueryError as exc:
            if exc.status != 422:
                raise
            refusals.append(exc.message)
    if not accepted:
        raise QueryError("no model applies to this image: " + "; ".join(refusals), 422)
    return max(accepted, key=lambda pair: pair[0])[1]


def instance_query_vector(*, instance: Instance, model_name: str | None = None) -> QueryVector:
    """The stored embedding of ``instance``, or one computed now when none is stored."""
    stored = instance_embedding(instance=instance, model_name=model_name)
    if stored is not None:
        from medvault.core.search import vector_decode

        return QueryVector(vector_decode(bytes(stored.vector), stored.dim, stored.dtype),
                           stored.model_name, stored.model_version, stored.label, "stored")
    candidates = _check_model(model_name)
    if not model_name:
        from medvault.core.ml import model_applies

        series = instance.series
        applicable = [m for m in candidates if model_applies(m, series.modality, series.body_part_examined)]
        candidates = applicable or candidates
    from medvault.archive.selectors import instance_dataset

    try:
        dataset = instance_dataset(instance=instance)
    except Exception as exc:  # noqa: BLE001 - unreadable stored image: a clear answer, logged
        log.exception("cannot read instance %s for a similarity query", instance.pk)
        raise QueryError("this image cannot be read from the archive", 422) from exc
    return _embed_any(candidates, dataset)


def read_query_file(data: bytes) -> Any:
    """An uploaded query file as a pydicom Dataset (DICOM) or a uint8 image (PNG/JPEG)."""
    if not data:
        raise QueryError("the uploaded file is empty")
    if len(data) > 132 and data[128:132] == b"DICM":
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError) as exc:
            raise QueryError(f"the uploaded DICOM file cannot be read: {exc}") from exc
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise QueryError("the uploaded DICOM file has no image")
        return ds
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_QUERY_PIXELS:
                raise QueryError("the uploaded image is too large")
            img.load()
            mode = "RGB" if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else "L"
            arr = np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise QueryError("the uploaded file is neither DICOM nor a PNG/JPEG image") from exc
    if arr.dtype != np.uint8:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]  # grey images saved as RGB
    return np.ascontiguousarray(arr)


def file_query_vector(*, data: bytes, model_name: str | None = None) -> QueryVector:
    """Embed an uploaded file (not stored in the archive)."""
    image = read_query_file(data)
    candidates = _check_model(model_name)
    if not model_name and hasattr(image, "Modality"):
        from medvault.core.ml import model_applies

        applicable = [m for m in candidates
                      if model_applies(m, str(image.get("Modality", "")), str(image.get("BodyPartExamined", "")))]
        candidates = applicable or candidates
    return _embed_any(candidates, image)
