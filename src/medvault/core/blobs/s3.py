"""S3 backend: content-addressed blobs as objects ``<prefix><k[0:2]>/<k[2:4]>/<key>``.

Works with any S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage, ...) through
boto3 (the ``s3`` extra: ``pip install 'medvault[s3]'``). The durability rule is the same as
for the filesystem backend: ``put`` returns only after the object store has acknowledged the
complete object, and the archive commits the row that points at the key only after ``put``
returned. Every upload carries its SHA-256 (``ChecksumSHA256``), so the store itself rejects
a body that was damaged on the way.

Object names are built only from validated keys (64 lower-case hex digits), never from input.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from medvault.core.blobs.base import BlobNotFound, blob_key, is_blob_key

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


def _is_not_found(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in _NOT_FOUND_CODES


class S3BlobStore:
    """Blobs in one bucket of an S3-compatible object store.

    Parameters
    ----------
    bucket
        Bucket name; it must exist (``create_bucket=True`` creates it, for tests and set-up).
    prefix
        Optional object-name prefix, e.g. ``"medvault/"``, to share a bucket.
    endpoint_url, region, access_key_id, secret_access_key
        Connection settings; ``None`` falls back to boto3's own configuration chain
        (environment, ``~/.aws``, instance profile).
    client
        A ready boto3 S3 client (tests); the connection settings are then ignored.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
        create_bucket: bool = False,
    ) -> None:
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise RuntimeError(
                    "the S3 blob backend needs boto3: pip install 'medvault[s3]'"
                ) from exc
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=region or None,
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    s3={"addressing_style": "path"},
                ),
            )
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def ping(self) -> None:
        """Raise unless the bucket exists and these credentials may use it (health checks)."""
        self.client.head_bucket(Bucket=self.bucket)

    def _name(self, key: str) -> str:
        if not is_blob_key(key):
            raise BlobNotFound(key)
        return f"{self.prefix}{key[0:2]}/{key[2:4]}/{key}"

    def _head(self, key: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise BlobNotFound(key) from None
            raise
        return head

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        try:
            if self._head(key).get("ContentLength") == len(data):
                return key
        except BlobNotFound:
            pass
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        # put_object returns only once the store has the whole object (S3 acknowledges a
        # write after it is durable); the row pointing at ``key`` commits after this.
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._name(key),
            Body=data,
            ChecksumSHA256=checksum,
            ContentType="application/octet-stream",
        )
        return key

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            if _is_not_found(exc):
                raise BlobNotFound(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        try:
            name = self._name(key)
        except BlobNotFound:
            return
        self.client.delete_object(Bucket=self.bucket, Key=name)

    def iter_keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for entry in page.get("Contents", []):
                name = str(entry["Key"]).rsplit("/", 1)[-1]
                if is_blob_key(name) and str(entry["Key"]) == self._name(name):
                    yield name

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def age_seconds(self, key: str) -> float:
        modified = self._head(key)["LastModified"]
        if isinstance(modified, datetime):
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            return (datetime.now(UTC) - modified).total_seconds()
        return 0.0
