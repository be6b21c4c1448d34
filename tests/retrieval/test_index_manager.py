"""The per-server index: built from the database, persisted, updated incrementally,
rebuilt when missing or stale; embedding storage."""

from __future__ import annotations

import numpy as np
import pytest

from medvault.core.search import ExactIndex, vectors_decode
from medvault.retrieval.index import managed_index, reset_registry
from medvault.retrieval.models import Embedding
from medvault.retrieval.services import embedding_store

from .conftest import DIM, make_instance, unit

pytestmark = pytest.mark.django_db


def _oracle() -> ExactIndex:
    rows = list(Embedding.objects.filter(model_name="lung-ct").values_list("id", "vector"))
    oracle = ExactIndex(DIM)
    oracle.add([r[0] for r in rows], vectors_decode([bytes(r[1]) for r in rows], DIM))
    return oracle


def _store_many(n: int, start: int = 0, group=None) -> list:
    out = []
    for i in range(n):
        inst = make_instance(group)
        out.append(embedding_store(instance=inst, model_name="lung-ct", model_version="fake-1",
                                   vector=unit(start + i), label="normal"))
    return out


def test_index_is_built_from_the_database_and_agrees_with_exact_search() -> None:
    _store_many(300)
    index = managed_index("lung-ct", "fake-1")
    oracle = _oracle()
    for seed in range(1000, 1020):
        q = unit(seed)
        got = index.search(q, 10, studies=None)
        assert got.keys.tolist() == oracle.search(q, 10).keys.tolist()
    assert index.status().source == "built" and index.status().size == 300


def test_index_is_saved_and_loaded_from_disk_by_the_next_process(index_dir) -> None:
    _store_many(50)
    managed_index("lung-ct", "fake-1").sync()
    assert list(index_dir.glob("*.usearch")) and list(index_dir.glob("*.npz"))
    reset_registry()  # a new server process
    fresh = managed_index("lung-ct", "fake-1")
    fresh.sync()
    assert fresh.status().source == "disk" and fresh.status().size == 50


def test_new_embeddings_are_added_incrementally_without_a_rebuild() -> None:
    _store_many(40)
    index = managed_index("lung-ct", "fake-1")
    index.sync()
    graph = index.index
    [new] = _store_many(1, start=500)
    res = index.search(unit(500), 1, studies=None)
    assert res.keys.tolist() == [new.id]
    assert index.index is graph  # same graph object: updated, not rebuilt


def test_saved_index_newer_than_the_database_is_rebuilt(index_dir) -> None:
    rows = _store_many(30)
    managed_index("lung-ct", "fake-1").sync()
    Embedding.objects.filter(id=rows[-1].id).delete()  # the file now knows a row the DB lost
    reset_registry()
    fresh = managed_index("lung-ct", "fake-1")
    fresh.sync()
    assert fresh.status().source == "built" and fresh.status().size == 29


def test_corrupt_index_file_is_rebuilt(index_dir) -> None:
    _store_many(20)
    managed_index("lung-ct", "fake-1").sync()
    for f in index_dir.glob("*.usearch"):
        f.write_bytes(b"garbage" * 100)
    reset_registry()
    fresh = managed_index("lung-ct", "fake-1")
    res = fresh.search(unit(3), 1, studies=None)
    assert fresh.status().source == "built" and len(res) == 1


def test_deleted_instances_leave_the_index() -> None:
    rows = _store_many(20)
    index = managed_index("lung-ct", "fake-1")
    index.sync()
    rows[5].instance.delete()
    res = index.search(unit(5), 20, studies=None)
    assert rows[5].id not in res.keys.tolist()
    assert len(index.catalog) == 19


def test_filters_by_study_set() -> None:
    rows = _store_many(20)
    index = managed_index("lung-ct", "fake-1")
    allowed = [rows[3].instance.series.study_id, rows[7].instance.series.study_id]
    res = index.search(unit(5), 10, studies=allowed)
    assert sorted(res.keys.tolist()) == sorted([rows[3].id, rows[7].id])
    assert len(index.search(unit(5), 10, studies=np.empty(0, dtype=np.int64))) == 0


# --- embedding_store -------------------------------------------------------------------------

def test_embedding_is_stored_compactly_and_normalised() -> None:
    inst = make_instance(None)
    row = embedding_store(instance=inst, model_name="lung-ct", model_version="v1",
                          vector=np.arange(1, 129, dtype=np.float32), label="normal")
    assert row.dim == 128 and row.dtype == "f16" and len(bytes(row.vector)) == 256
    back = vectors_decode([bytes(row.vector)], 128)[0]
    assert np.linalg.norm(back) == pytest.approx(1.0, abs=1e-4)


def test_int8_storage_setting(settings) -> None:
    settings.MEDVAULT_EMBEDDING_DTYPE = "i8"
    row = embedding_store(instance=make_instance(None), model_name="lung-ct", model_version="v1",
                          vector=unit(1, 64), label="")
    assert row.dtype == "i8" and len(bytes(row.vector)) == 64


def test_same_embedding_twice_is_a_no_op_and_a_change_gets_a_new_row() -> None:
    inst = make_instance(None)
    a = embedding_store(instance=inst, model_name="lung-ct", model_version="v1", vector=unit(1), label="x")
    b = embedding_store(instance=inst, model_name="lung-ct", model_version="v1", vector=unit(1), label="x")
    assert a.id == b.id
    c = embedding_store(instance=inst, model_name="lung-ct", model_version="v1", vector=unit(1), label="y")
    assert c.id != a.id and Embedding.objects.filter(instance=inst).count() == 1


def test_new_model_version_replaces_the_old_one_but_not_other_models() -> None:
    inst = make_instance(None)
    embedding_store(instance=inst, model_name="lung-ct", model_version="v1", vector=unit(1), label="")
    embedding_store(instance=inst, model_name="brain-mri", model_version="v1", vector=unit(2), label="")
    embedding_store(instance=inst, model_name="lung-ct", model_version="v2", vector=unit(3), label="")
    rows = set(Embedding.objects.filter(instance=inst).values_list("model_name", "model_version"))
    assert rows == {("lung-ct", "v2"), ("brain-mri", "v1")}


@pytest.mark.parametrize("bad", [np.zeros(8), np.array([np.nan] * 8), np.ones((2, 4)), np.array([])])
def test_bad_vectors_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        embedding_store(instance=make_instance(None), model_name="lung-ct", model_version="v1",
                        vector=bad, label="")
    assert Embedding.objects.count() == 0
