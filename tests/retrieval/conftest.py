"""Fixtures for retrieval tests: users in two groups, index-only studies with embeddings,
and a fake analysis backend so that the upload path runs without the trained models."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group

from medvault.retrieval.index import reset_registry

PASSWORD = "Corr3ct-Horse-Battery"
DIM = 16
_counter = itertools.count(1)


@dataclass
class FakeOutput:
    label: str | None
    embedding: np.ndarray | None
    refused: bool = False
    reason: str = ""
    model_name: str = "lung-ct"
    model_version: str = "fake-1"
    probabilities: dict[str, float] = field(default_factory=dict)
    heatmap: Any = None
    latency_ms: float = 0.1
    model_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def fake_embedding(image: np.ndarray) -> np.ndarray:
    """4x4 block means of the image, centred and normalised: similar images, similar vectors."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    h, w = arr.shape
    blocks = np.array([arr[i * h // 4:(i + 1) * h // 4, j * w // 4:(j + 1) * w // 4].mean()
                       for i in range(4) for j in range(4)], dtype=np.float32)
    blocks -= blocks.mean()
    norm = np.linalg.norm(blocks)
    return blocks / norm if norm else blocks


class FakeBackend:
    """Stands in for the ONNX models: refuses blank images, embeds everything else."""

    def analyse(self, model_name: str, ds_or_image: Any) -> FakeOutput:
        image = ds_or_image.pixel_array if hasattr(ds_or_image, "pixel_array") else ds_or_image
        vec = fake_embedding(image)
        if not np.any(vec):
            return FakeOutput(None, None, refused=True, reason="blank image", model_name=model_name)
        label = "bright-top" if vec[:8].sum() > 0 else "bright-bottom"
        return FakeOutput(label, vec, model_name=model_name)


@pytest.fixture(autouse=True)
def index_dir(settings, tmp_path: Path) -> Path:
    """A fresh on-disk index location and in-memory registry for every test."""
    path = tmp_path / "index"
    settings.MEDVAULT_INDEX_DIR = path
    settings.MEDVAULT_INDEX_CHECK_SECONDS = 0
    settings.MEDVAULT_INDEX_SAVE_SECONDS = 0
    # Password hashing is not under test here and costs seconds per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    reset_registry()
    yield path
    reset_registry()


@pytest.fixture
def fake_models(settings, tmp_path: Path) -> Path:
    """Both models 'installed' (empty ONNX files) and served by FakeBackend."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("lung-ct", "brain-mri"):
        (models / f"{name}.onnx").write_bytes(b"")
    settings.MEDVAULT_MODELS_DIR = models
    settings.MEDVAULT_ANALYSIS_BACKEND = f"{FakeBackend.__module__}.FakeBackend"
    from medvault.analysis.backends import _backend_for

    _backend_for.cache_clear()
    yield models
    _backend_for.cache_clear()


def make_user(username: str, role: str = "clinician", groups: tuple[Group, ...] = (), **extra: Any):
    from medvault.accounts.models import User

    user = User.objects.create_user(username=username, password=PASSWORD, role=role,
                                    status="approved", email=f"{username}@example.org", **extra)
    for group in groups:
        user.groups.add(group)
    return user


def make_instance(group: Group | None, *, modality: str = "CT", study: Any = None,
                  study_date: str = "2024-03-01", body_part: str = "CHEST"):
    """One instance (index rows only, no blob) in a new study unless ``study`` is given."""
    from medvault.archive.models import Instance, Patient, Series, Study

    n = next(_counter)
    if study is None:
        patient, _ = Patient.objects.get_or_create(
            patient_id=f"PID{n:05d}", issuer_of_patient_id="",
            defaults={"patient_name": f"Secret^Name{n}"})
        study = Study.objects.create(
            study_instance_uid=f"2.25.{n}.1", patient=patient, group=group,
            study_date=study_date, modalities_in_study=modality)
    series = Series.objects.create(series_instance_uid=f"2.25.{n}.2", study=study,
                                   modality=modality, body_part_examined=body_part)
    return Instance.objects.create(
        sop_instance_uid=f"2.25.{n}.3", series=series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        rows=8, columns=8, received_transfer_syntax_uid="1.2.840.10008.1.2.1",
        transfer_syntax_uid="1.2.840.10008.1.2.1", blob_key=f"{n:064x}", content_sha256="0" * 64,
        received_bytes=0, stored_bytes=0, metadata={}, source="test")


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def world(db):
    """Two groups with clinicians, an admin, a researcher; 30 embedded instances in group A
    and 30 in group B. B's instances are placed *nearest* to A's query on purpose."""
    from medvault.retrieval.services import embedding_store

    ga, gb = Group.objects.create(name="Radiology A"), Group.objects.create(name="Radiology B")
    users = {
        "alice": make_user("alice", groups=(ga,)),
        "bob": make_user("bob", groups=(gb,)),
        "admin": make_user("admin", role="administrator"),
        "rita": make_user("rita", role="researcher", groups=(ga,)),
        "nobody": make_user("nobody"),
    }
    base = unit(0)
    a_instances, b_instances = [], []
    for i in range(30):
        inst = make_instance(ga, modality="CT" if i % 3 else "MR")
        vec = base + 0.3 * unit(100 + i) * (1 + i / 10)  # increasingly far from base
        embedding_store(instance=inst, model_name="lung-ct", model_version="fake-1", vector=vec,
                        label="adenocarcinoma" if i % 2 else "normal")
        a_instances.append(inst)
    for i in range(30):
        inst = make_instance(gb)
        vec = base + 0.01 * unit(200 + i)  # closer to the query than anything in A
        embedding_store(instance=inst, model_name="lung-ct", model_version="fake-1", vector=vec,
                        label="adenocarcinoma")
        b_instances.append(inst)
    query = make_instance(ga)
    embedding_store(instance=query, model_name="lung-ct", model_version="fake-1", vector=base,
                    label="adenocarcinoma")
    # A second image in the query's own study, identical vector.
    sibling = make_instance(ga, study=query.series.study)
    embedding_store(instance=sibling, model_name="lung-ct", model_version="fake-1", vector=base,
                    label="adenocarcinoma")
    return {"groups": (ga, gb), "users": users, "a": a_instances, "b": b_instances,
            "query": query, "sibling": sibling, "base": base}


def token_for(user: Any) -> str:
    from medvault.accounts.tokens import token_create

    return token_create(user=user, name="test")[1]
