"""Issue 15: a multi-instance STOW-RS request is stored in batches (one blob barrier and one
index transaction per batch) while each part's outcome stays its own."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from medvault.archive import ingest
from medvault.archive.blobstore import blob_store
from medvault.archive.ingest import BatchItem, instance_parse, parsed_store_batch
from medvault.archive.models import Instance, Series, Study
from medvault.archive.outcomes import StoreResult, StoreStatus
from medvault.core.dicom.parse import ParsedInstance

from .ctgen import ct_series
from .helpers import stow


def _uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def _failed(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(i["00081155"].get("Value", [""])[0], i["00081197"]["Value"][0])
            for i in body.get("00081198", {}).get("Value", [])]


def _referenced(body: dict[str, Any]) -> list[str]:
    return [i["00081155"]["Value"][0] for i in body.get("00081199", {}).get("Value", [])]


@pytest.fixture
def client_a(clinician_a: Any, blob_dir: Any, no_analysis: Any) -> tuple[Client, dict[str, str]]:
    return Client(), clinician_a.headers


@pytest.mark.django_db
def test_twenty_parts_one_bad_in_the_middle(client_a: tuple[Client, dict[str, str]]) -> None:
    client, headers = client_a
    files = ct_series(20, seed=31)
    bad_uid = _uid(files[10])
    files[10] = files[10][:-5000]  # truncated inside its pixel data
    response = stow(client, headers, files)
    assert response.status_code == 202, response.content[:500]
    body = response.json()
    good = [_uid(f) for i, f in enumerate(files) if i != 10]
    assert _referenced(body) == good
    assert _failed(body) == [(bad_uid, 0xC000)]
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == set(good)
    series = Series.objects.get()
    assert series.number_of_instances == 19
    assert Study.objects.get().number_of_instances == 19


@pytest.mark.django_db(transaction=True)
def test_one_index_transaction_per_batch(client_a: tuple[Client, dict[str, str]], monkeypatch: Any) -> None:
    """Twenty parts: their rows are written inside one transaction (one commit), each in a
    savepoint of its own, not in twenty transactions."""
    client, headers = client_a
    files = ct_series(20, seed=32)
    commits: list[int] = []
    real_commit = connection.commit

    def counting_commit() -> None:
        commits.append(len(context.captured_queries))
        real_commit()

    monkeypatch.setattr(connection, "commit", counting_commit)
    with CaptureQueriesContext(connection) as context:
        response = stow(client, headers, files)
    assert response.status_code == 200, response.content[:500]
    # MariaDB quotes names with backticks; the checks read the SQL with double quotes.
    queries = [{**q, "sql": q["sql"].replace("`", '"')} for q in context.captured_queries]
    inserts = [n for n, q in enumerate(queries) if q["sql"].startswith('INSERT INTO "archive_instance"')]
    assert len(inserts) == 20
    # No commit between the first and the last instance row: one transaction holds them all.
    assert not [c for c in commits if inserts[0] < c <= inserts[-1]]
    assert [c for c in commits if c > inserts[-1]], "the batch was committed"
    savepoints = [q for q in queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) >= 20
    # The existing-UID lookup is one query for the batch, not one per part.
    lookups = [q for q in queries
               if q["sql"].startswith("SELECT") and 'FROM "archive_instance"' in q["sql"]
               and '"sop_instance_uid" IN' in q["sql"]]
    assert len(lookups) == 1


@pytest.mark.django_db
def test_a_part_failing_in_the_index_fails_alone(client_a: tuple[Client, dict[str, str]], monkeypatch: Any) -> None:
    client, headers = client_a
    files = ct_series(6, seed=33)
    broken = _uid(files[2])
    real_index = ingest.index_instance

    def index(parsed: ParsedInstance, **kwargs: Any) -> Instance:
        instance = real_index(parsed, **kwargs)  # rows written, then the savepoint is rolled back
        if parsed.sop_instance_uid == broken:
            raise ValueError("a value the database refuses")
        return instance

    monkeypatch.setattr(ingest, "index_instance", index)
    response = stow(client, headers, files)
    assert response.status_code == 202, response.content[:500]
    assert _failed(response.json()) == [(broken, 0x0110)]
    stored = set(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert stored == {_uid(f) for f in files} - {broken}
    assert Series.objects.get().number_of_instances == 5  # the rolled-back count is not kept


@pytest.mark.django_db
def test_the_same_instance_twice_in_one_request(client_a: tuple[Client, dict[str, str]]) -> None:
    client, headers = client_a
    [data] = ct_series(1, seed=34)
    response = stow(client, headers, [data, data])
    assert response.status_code == 200, response.content[:500]
    items = response.json()["00081199"]["Value"]
    assert len(items) == 2 and "00081196" not in items[0] and items[1]["00081196"]["Value"] == [0xB000]
    assert Instance.objects.count() == 1


def _items(files: list[bytes]) -> list[BatchItem]:
    items = []
    for data in files:
        parsed = instance_parse(data=data)
        assert isinstance(parsed, ParsedInstance)
        items.append(BatchItem(parsed, data))
    return items


@pytest.mark.django_db
def test_every_blob_is_on_disk_before_its_row(blob_dir: Any, monkeypatch: Any) -> None:
    store = blob_store()
    seen: list[bool] = []
    real_index = ingest.index_instance

    def index(parsed: ParsedInstance, *, blob_key: str, **kwargs: Any) -> Instance:
        seen.append(store.exists(blob_key))
        return real_index(parsed, blob_key=blob_key, **kwargs)

    monkeypatch.setattr(ingest, "index_instance", index)
    results = parsed_store_batch(_items(ct_series(5, seed=35)), source="test")
    assert seen == [True] * 5
    assert all(isinstance(r, StoreResult) and r.status is StoreStatus.STORED for r in results)


class _Crash(BaseException):
    """The process dies (or is killed) in the middle of a batch."""


@pytest.mark.django_db(transaction=True)
def test_a_crash_mid_batch_leaves_no_instance_of_it(blob_dir: Any, monkeypatch: Any) -> None:
    real_index = ingest.index_instance
    calls = {"n": 0}

    def index(parsed: ParsedInstance, **kwargs: Any) -> Instance:
        calls["n"] += 1
        if calls["n"] == 4:
            raise _Crash()
        return real_index(parsed, **kwargs)

    monkeypatch.setattr(ingest, "index_instance", index)
    with pytest.raises(_Crash):
        parsed_store_batch(_items(ct_series(6, seed=36)), source="test")
    # Nothing of the batch is indexed (the blobs written are orphans for scrub).
    assert Instance.objects.count() == 0 and Series.objects.count() == 0 and Study.objects.count() == 0


@pytest.mark.django_db
def test_a_batch_locks_its_studies_in_uid_order(blob_dir: Any, monkeypatch: Any) -> None:
    """Two studies interleaved in one batch are indexed study by study, in UID order (the
    order every batch takes its study row locks in), and answered in the order they came."""
    first, second = ct_series(3, seed=37), ct_series(3, seed=38, patient_id="GEN-CT-2")
    files = [f for pair in zip(second, first, strict=True) for f in pair]
    order: list[str] = []
    real_index = ingest.index_instance

    def index(parsed: ParsedInstance, **kwargs: Any) -> Instance:
        order.append(str(parsed.dataset.StudyInstanceUID))
        return real_index(parsed, **kwargs)

    monkeypatch.setattr(ingest, "index_instance", index)
    results = parsed_store_batch(_items(files), source="test")
    assert order == sorted(order) and len(set(order)) == 2
    assert [r.sop_instance_uid for r in results if isinstance(r, StoreResult)] == [_uid(f) for f in files]
