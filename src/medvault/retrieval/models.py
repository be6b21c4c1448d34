"""Embeddings for similar-image search: one compact vector per (instance, model, version).

The database is the source of truth; every app server builds (or loads from disk) its own
HNSW index from these rows. Rows hold no logic: writes live in ``services.py``.
"""

from __future__ import annotations

from django.db import models

from medvault.archive.models import Instance


class VectorDtype(models.TextChoices):
    F16 = "f16", "IEEE float16"
    I8 = "i8", "int8 (x / 127)"


class Embedding(models.Model):
    """The L2-normalised embedding a model computed for one instance.

    ``label`` is copied from the analysis result at the time the embedding was stored, so a
    label filter needs no join. A changed vector or label gets a new row (new id): app
    servers notice new ids cheaply and pick them up without a rebuild.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="embeddings")
    model_name = models.CharField(max_length=32)
    model_version = models.CharField(max_length=64)
    dim = models.PositiveSmallIntegerField()
    dtype = models.CharField(max_length=4, choices=VectorDtype.choices, default=VectorDtype.F16)
    vector = models.BinaryField()
    label = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "model_name", "model_version"],
                name="retrieval_embedding_unique_instance_model",
            )
        ]
        indexes = [
            models.Index(fields=["model_name", "model_version", "id"], name="retrieval_emb_model_id"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.model_version} embedding of {self.instance_id}"
