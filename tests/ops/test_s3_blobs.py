"""The S3 blob backend against moto's standalone S3 server (a protocol test, not durability)."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from medvault.core.blobs import BlobNotFound, BlobStore, blob_key
from medvault.core.blobs.s3 import S3BlobStore


@pytest.fixture
def store(s3_endpoint: str) -> S3BlobStore:
    return S3BlobStore(
        f"mv-test-{uuid.uuid4().hex[:12]}",
        prefix="blobs/",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
        create_bucket=True,
    )


def test_s3_store_implements_the_blob_interface(store: S3BlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_get_roundtrip_is_bit_exact_and_content_addressed(store: S3BlobStore) -> None:
    data = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of any chunk size
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.get(key) == data
    assert store.exists(key)
    assert store.size(key) == len(data)
    assert 0 <= store.age_seconds(key) < 120
    # The object name is derived from the key only.
    names = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert names == [f"blobs/{key[:2]}/{key[2:4]}/{key}"]


def test_put_is_idempotent_and_iter_keys_lists_each_blob_once(store: S3BlobStore) -> None:
    keys = {store.put(b"first"), store.put(b"second"), store.put(b"first")}
    assert keys == {blob_key(b"first"), blob_key(b"second")}
    assert sorted(store.iter_keys()) == sorted(keys)


def test_missing_and_malformed_keys_are_not_found(store: S3BlobStore) -> None:
    absent = blob_key(b"never stored")
    assert not store.exists(absent)
    with pytest.raises(BlobNotFound):
        store.get(absent)
    with pytest.raises(BlobNotFound):
        store.size(absent)
    for hostile in ["../../etc/passwd", "a" * 63, "A" * 64, "", "../" + "0" * 61]:
        assert not store.exists(hostile)
        with pytest.raises(BlobNotFound):
            store.get(hostile)
        store.delete(hostile)  # ignored, never an object operation on a crafted name


def test_delete_removes_only_that_blob(store: S3BlobStore) -> None:
    keep, drop = store.put(b"keep"), store.put(b"drop")
    store.delete(drop)
    store.delete(drop)  # absent keys are ignored
    assert not store.exists(drop)
    assert store.get(keep) == b"keep"
    assert list(store.iter_keys()) == [keep]


def test_put_sends_the_sha256_so_the_store_can_check_the_body(store: S3BlobStore) -> None:
    """A real S3 rejects a body whose x-amz-checksum-sha256 does not match; moto does not check
    it, so assert on the request that goes out."""
    sent: list[dict[str, str]] = []

    def capture(request, **kwargs):  # botocore event hook
        sent.append({k.lower(): (v.decode() if isinstance(v, bytes) else v)
                     for k, v in request.headers.items()})

    store.client.meta.events.register("before-send.s3.PutObject", capture)
    data = b"checked on arrival"
    store.put(data)
    assert len(sent) == 1
    assert sent[0]["x-amz-checksum-sha256"] == base64.b64encode(
        hashlib.sha256(data).digest()
    ).decode()


def test_unreachable_endpoint_raises_instead_of_pretending(s3_endpoint: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    store = S3BlobStore(
        "mv-unreachable", endpoint_url="http://127.0.0.1:9", region="us-east-1",
        access_key_id="test", secret_access_key="test",
    )
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises((BotoCoreError, ClientError)):
        store.put(b"nowhere to go")


# --- the archive on S3 -------------------------------------------------------------------


@pytest.fixture
def s3_settings(settings, s3_endpoint: str) -> S3BlobStore:
    bucket = f"mv-archive-{uuid.uuid4().hex[:12]}"
    settings.MEDVAULT_BLOB_BACKEND = "s3"
    settings.MEDVAULT_S3_ENDPOINT_URL = s3_endpoint
    settings.MEDVAULT_S3_BUCKET = bucket
    settings.MEDVAULT_S3_PREFIX = "medvault/"
    settings.MEDVAULT_S3_REGION = "us-east-1"
    settings.MEDVAULT_S3_ACCESS_KEY_ID = "test"
    settings.MEDVAULT_S3_SECRET_ACCESS_KEY = "test"
    return S3BlobStore(bucket, prefix="medvault/", endpoint_url=s3_endpoint, region="us-east-1",
                       access_key_id="test", secret_access_key="test", create_bucket=True)


@pytest.mark.django_db(transaction=True)
def test_archive_stores_on_s3_and_backup_restores_into_s3(
    s3_settings: S3BlobStore, shared_data, tmp_path
) -> None:
    import json
    from io import StringIO

    from django.core.management import call_command

    from medvault.archive.blobstore import blob_store
    from medvault.archive.ingest import instance_store
    from medvault.archive.models import Instance
    from medvault.archive.selectors import instance_part10_bytes

    assert isinstance(blob_store(), S3BlobStore)
    result = instance_store(
        data=(shared_data / "dicom" / "single_ct" / "CT_small.dcm").read_bytes(), source="cli"
    )
    assert result.status == "stored"
    key = result.instance.blob_key
    assert list(s3_settings.iter_keys()) == [key]
    exported = instance_part10_bytes(instance=result.instance)
    assert hashlib.sha256(s3_settings.get(key)).hexdigest() == key

    out = StringIO()
    call_command("backup", str(tmp_path / "bk"), stdout=out, stderr=StringIO())
    snapshot = json.loads(out.getvalue())
    assert snapshot["blob_count"] == 1
    s3_settings.delete(key)
    call_command("flush", interactive=False, verbosity=0)
    call_command("restore", str(tmp_path / "bk"), stdout=StringIO(), stderr=StringIO())
    assert list(s3_settings.iter_keys()) == [key]
    assert instance_part10_bytes(instance=Instance.objects.get()) == exported


@pytest.mark.django_db
def test_no_row_commits_when_the_object_store_refuses_the_blob(
    s3_settings: S3BlobStore, settings, shared_data
) -> None:
    from botocore.exceptions import ClientError

    from medvault.archive.ingest import instance_store
    from medvault.archive.models import Instance

    settings.MEDVAULT_S3_BUCKET = "mv-no-such-bucket"
    with pytest.raises(ClientError):
        instance_store(
            data=(shared_data / "dicom" / "single_ct" / "CT_small.dcm").read_bytes(), source="cli"
        )
    assert Instance.objects.count() == 0


@pytest.mark.django_db
def test_healthz_checks_the_bucket(s3_settings: S3BlobStore, settings, client) -> None:
    assert client.get("/healthz").json()["blob_store"] == "ok"
    settings.MEDVAULT_S3_BUCKET = "mv-no-such-bucket"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["blob_store"] == "unavailable"
