"""The filesystem blob store: content addressing, durability path, no names from input."""

from __future__ import annotations

import hashlib

import pytest

from medvault.core.blobs import BlobNotFound, BlobStore, FilesystemBlobStore


def test_put_get_exists_size_delete(tmp_path):
    store = FilesystemBlobStore(tmp_path)
    assert isinstance(store, BlobStore)
    data = b"\x00\x01 some dicom bytes" * 100
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.exists(key) and store.get(key) == data and store.size(key) == len(data)
    # Idempotent: the same bytes land on the same key, once.
    assert store.put(data) == key
    assert list(store.iter_keys()) == [key]
    # The file lives at its content address, and no temporary file is left behind.
    assert (tmp_path / key[:2] / key[2:4] / key).read_bytes() == data
    assert list((tmp_path / "tmp").iterdir()) == []
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get(key)
    store.delete(key)  # absent: ignored


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab/../../x", "A" * 64, "", "0" * 63])
def test_keys_that_are_not_hashes_never_become_paths(tmp_path, bad):
    store = FilesystemBlobStore(tmp_path)
    assert not store.exists(bad)
    with pytest.raises(BlobNotFound):
        store.get(bad)
    store.delete(bad)


def test_iter_keys_ignores_foreign_files(tmp_path):
    store = FilesystemBlobStore(tmp_path)
    key = store.put(b"x")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "tmp" / "put-leftover").write_bytes(b"partial")
    (tmp_path / "README").write_text("not a blob")
    assert list(store.iter_keys()) == [key]
    assert store.clean_temporary(older_than_s=0) == 1


def test_put_many_stores_each_blob_durably(tmp_path, monkeypatch) -> None:
    import os as _os

    from medvault.core.blobs import filesystem

    synced: list[int] = []
    real_fsync = _os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(filesystem.os, "fsync", counting_fsync)
    store = filesystem.FilesystemBlobStore(tmp_path)
    blobs = [b"one", b"two", b"one", b"three" * 1000]
    keys = store.put_many(blobs)
    assert keys == [filesystem.blob_key(b) for b in blobs]
    assert [store.get(k) for k in keys] == blobs
    # Three distinct blobs: three files and their directories fsynced; nothing left in tmp.
    assert len(synced) == 3 + len({k[:4] for k in keys})
    assert not list((tmp_path / "tmp").iterdir())
    synced.clear()
    assert store.put_many(blobs) == keys  # already stored: nothing written again
    assert synced == []


def test_put_many_leaves_no_temporary_file_when_a_write_fails(tmp_path, monkeypatch) -> None:
    from medvault.core.blobs import filesystem

    store = filesystem.FilesystemBlobStore(tmp_path)
    calls = {"n": 0}
    real_write = filesystem.os.write

    def failing_write(fd: int, data: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(filesystem.os, "write", failing_write)
    with pytest.raises(OSError):
        store.put_many([b"a", b"b", b"c"])
    assert not list((tmp_path / "tmp").iterdir())
    assert list(store.iter_keys()) == []
