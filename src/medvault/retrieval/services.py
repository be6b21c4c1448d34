"""Writes of the retrieval app: storing embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction

from medvault.archive.models import Instance
from medvault.core.search import l2_normalise, vector_encode
from medvault.retrieval.conf import embedding_dtype
from medvault.retrieval.models import Embedding


def embedding_store(
    *,
    instance: Instance,
    model_name: str,
    model_version: str,
    vector: Any,
    label: str | None,
) -> Embedding:
    """Store the embedding ``model_name`` (``model_version``) computed for ``instance``.

    The vector is L2-normalised again (defensively) and kept as float16 (or int8, setting
    ``MEDVAULT_EMBEDDING_DTYPE``). Storing the same vector and label twice is a no-op;
    a different vector or label replaces the row with a new one, and rows of other versions
    of the same model for this instance are dropped (their vectors live in another space).

    Raises ``ValueError`` for a vector that is empty, not 1-D, not finite or all zeros.
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"an embedding must be a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or not np.any(arr):
        raise ValueError("an embedding must be finite and not all zeros")
    if not model_name or not model_version:
        raise ValueError("model_name and model_version are required")
    dtype = embedding_dtype()
    data = vector_encode(l2_normalise(arr), dtype)
    label = (label or "")[:64]
    with transaction.atomic():
        Embedding.objects.filter(instance=instance, model_name=model_name).exclude(
            model_version=model_version
        ).delete()
        existing = Embedding.objects.filter(
            instance=instance, model_name=model_name, model_version=model_version
        ).first()
        if existing is not None:
            if bytes(existing.vector) == data and existing.label == label and existing.dtype == dtype:
                return existing
            existing.delete()
        return Embedding.objects.create(
            instance=instance,
            model_name=model_name,
            model_version=model_version,
            dim=int(arr.shape[0]),
            dtype=dtype,
            vector=data,
            label=label,
        )


def result_embedding_store(result: Any, output: Any) -> None:
    """Keep the embedding an analysis returned (the hook analysis calls for every new result,
    registered in ``RetrievalConfig.ready``); a refused image or a model without one has none."""
    vector = getattr(output, "embedding", None)
    if vector is None or getattr(output, "refused", False):
        return
    embedding_store(
        instance=result.instance,
        model_name=output.model_name,
        model_version=output.model_version,
        vector=np.asarray(vector, dtype=np.float32),
        label=output.label,
    )


def _model_version(model_name: str) -> str | None:
    """The installed version of ``model_name``, from the loaded model or its card."""
    import json

    from medvault.analysis.backends import analysis_backend
    from medvault.analysis.conf import models_dir

    backend = analysis_backend()
    loaded = None
    if hasattr(backend, "model"):
        try:
            loaded = backend.model(model_name)
        except Exception:  # noqa: BLE001 - fall back to the card / the first analysis
            loaded = None
    for attr in ("version", "model_version"):
        value = getattr(loaded, attr, None)
        if value:
            return str(value)
    card = getattr(loaded, "card", None)
    if isinstance(card, dict) and card.get("version"):
        return str(card["version"])
    try:
        data = json.loads((models_dir() / f"{model_name}.json").read_text())
        if isinstance(data, dict) and data.get("version"):
            return str(data["version"])
    except (OSError, ValueError):
        pass
    return None


def _applicable_instances(model_name: str):  # type: ignore[no-untyped-def]
    from django.db.models import Q

    from medvault.archive.models import Instance, Series
    from medvault.core.ml import model_applies

    pairs = Series.objects.values_list("modality", "body_part_examined").distinct()
    cond = Q(pk__in=[])
    for modality, body_part in pairs:
        if model_applies(model_name, modality or "", body_part or ""):
            cond |= Q(series__modality=modality, series__body_part_examined=body_part)
    return Instance.objects.filter(cond)


def embeddings_reindex(
    *,
    model_name: str,
    limit: int | None = None,
    progress: Any = None,
    build_index: bool = True,
) -> dict[str, Any]:
    """Embed every instance ``model_name`` applies to with the installed model version.

    Instances that already have an embedding of that version are skipped, so running it
    again after an interruption (or a crash) resumes. Returns counts.
    """
    from medvault.analysis.backends import analysis_backend
    from medvault.archive.selectors import instance_dataset
    from medvault.retrieval.query import QueryError, available_models

    if model_name not in available_models():
        raise QueryError(f"model {model_name!r} is not installed on this server", 503)
    backend = analysis_backend()
    version = _model_version(model_name)
    applicable = _applicable_instances(model_name).order_by("id")
    if version is None:
        # No version on record: learn it from the model's answer on the first image it takes.
        for probe in applicable.iterator(chunk_size=50):
            try:
                output = backend.analyse(model_name, instance_dataset(instance=probe))
            except Exception:  # noqa: BLE001 - try the next image
                continue
            version = str(output.model_version)
            break
    todo = applicable
    if version:
        todo = todo.exclude(embeddings__model_name=model_name, embeddings__model_version=version)
    skipped = applicable.count() - todo.count()
    total = todo.count()
    if limit:
        total = min(total, limit)
    done = stored = refused = failed = 0
    for instance in todo.select_related("series").iterator(chunk_size=200):
        if limit and done >= limit:
            break
        done += 1
        try:
            output = backend.analyse(model_name, instance_dataset(instance=instance))
        except Exception:  # noqa: BLE001 - one unreadable image must not stop the run
            failed += 1
            continue
        if output.refused or output.embedding is None:
            refused += 1
        else:
            embedding_store(instance=instance, model_name=model_name,
                            model_version=str(output.model_version),
                            vector=output.embedding, label=output.label)
            stored += 1
        if progress is not None and (done % 100 == 0 or done == total):
            progress(done, total)
    index_size = None
    if build_index and version:
        from medvault.retrieval.index import managed_index

        index = managed_index(model_name, version)
        index.sync(force_full=True)
        index.save()
        index_size = index.status().size
    return {"model": model_name, "model_version": version, "considered": done,
            "stored": stored, "refused": refused, "skipped": skipped, "failed": failed, "index_size": index_size}
