"""Backup and restore of a whole installation: the database and the blob store.

Layout of a backup destination (one directory, any number of snapshots)::

    DEST/blobs/<k[0:2]>/<k[2:4]>/<key>     content-addressed pool shared by all snapshots
    DEST/snapshots/<name>/database.<ext>  consistent copy of the database
    DEST/snapshots/<name>/manifest.json   what the snapshot holds, with hashes
    DEST/LATEST                           name of the newest complete snapshot

A snapshot is consistent while MedVault keeps running: the database is copied first in one
transaction-consistent step (``VACUUM INTO`` for SQLite, ``pg_dump`` for PostgreSQL,
``mariadb-dump --single-transaction`` for MariaDB/MySQL), then the blob store is listed.
Because a blob is durable before the row that points at it commits, every blob that the
copied database refers to is already in the store when it is listed. Blobs are copied
incrementally: a content address already in the pool is never copied again. The manifest is
written last, so a snapshot without a manifest is incomplete and ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection, connections

from medvault.core.blobs import FilesystemBlobStore, is_blob_key

FORMAT = "medvault-backup/1"
_DB_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump", "mysql": "database.sql"}


class BackupError(Exception):
    """A backup, verification or restore could not be completed; the message says why."""


@dataclass
class VerifyReport:
    snapshot: str
    checked_blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _write_json_durably(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _db_settings() -> dict[str, Any]:
    return dict(connection.settings_dict)


def _pg_env(db: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env


def _pg_args(db: dict[str, Any]) -> list[str]:
    args = []
    if db.get("HOST"):
        args += ["-h", str(db["HOST"])]
    if db.get("PORT"):
        args += ["-p", str(db["PORT"])]
    if db.get("USER"):
        args += ["-U", str(db["USER"])]
    return args


def _my_args(db: dict[str, Any]) -> list[str]:
    args = []
    if db.get("HOST"):
        args += [f"--host={db['HOST']}"]
    if db.get("PORT"):
        args += [f"--port={db['PORT']}"]
    if db.get("USER"):
        args += [f"--user={db['USER']}"]
    if db.get("PASSWORD"):
        args += [f"--password={db['PASSWORD']}"]
    return args


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupError(f"{names[0]} is not installed (Debian: postgresql-client / mariadb-client)")


def _run(cmd: list[str], **kwargs: Any) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise BackupError(f"{Path(cmd[0]).name} failed: {result.stderr.strip()[-2000:]}")


def dump_database(target: Path) -> str:
    """Write a transaction-consistent copy of the default database to ``target``."""
    vendor = connection.vendor
    db = _db_settings()
    if vendor == "sqlite":
        connection.ensure_connection()
        if connection.in_atomic_block:
            raise BackupError("SQLite cannot be snapshotted inside a transaction")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM INTO %s", [str(target)])
    elif vendor == "postgresql":
        _run(
            [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             f"--file={target}", *_pg_args(db), str(db["NAME"])],
            env=_pg_env(db),
        )
    elif vendor == "mysql":
        with target.open("wb") as handle:
            result = subprocess.run(
                [_tool("mariadb-dump", "mysqldump"), "--single-transaction", "--quick",
                 "--routines", "--triggers", "--hex-blob", "--no-tablespaces",
                 "--default-character-set=utf8mb4", *_my_args(db), str(db["NAME"])],
                stdout=handle, stderr=subprocess.PIPE, text=False,
            )
        if result.returncode != 0:
            raise BackupError(f"mariadb-dump failed: {result.stderr.decode(errors='replace')}")
    else:  # pragma: no cover - only the three engines are supported
        raise BackupError(f"backup does not support the {vendor} database engine")
    _fsync_file(target)
    return vendor


def _applied_migrations() -> dict[str, str]:
    latest: dict[str, str] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
        for app, name in cursor.fetchall():
            latest[app] = name
    return latest


def snapshot_names(dest: Path) -> list[str]:
    root = dest / "snapshots"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())


def backup_create(
    *, dest: Path, store: Any, log: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Make one snapshot of the running installation in ``dest``; returns its manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    pool = FilesystemBlobStore(dest / "blobs")
    started = time.monotonic()
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)
    snap_dir = dest / "snapshots" / name
    snap_dir.mkdir(parents=True)

    # 1. The database, consistent in itself.
    vendor = connection.vendor
    db_file = snap_dir / _DB_FILES.get(vendor, "database.dump")
    dump_database(db_file)
    log(f"database copied ({vendor}, {db_file.stat().st_size} bytes)")

    # 2. The blobs: everything the store holds now includes everything the copy refers to.
    blobs: dict[str, int] = {}
    new = new_bytes = 0
    problems: list[str] = []
    for key in store.iter_keys():
        if not is_blob_key(key):
            continue
        if pool.exists(key):
            blobs[key] = pool.size(key)
            continue
        try:
            data = store.get(key)
        except KeyError:
            continue  # deleted since it was listed; the copied database no longer needs it
        if hashlib.sha256(data).hexdigest() != key:
            problems.append(f"blob {key} in the store is corrupt (its bytes hash differently)")
            continue
        pool.put(data)
        blobs[key] = len(data)
        new += 1
        new_bytes += len(data)
    if problems:
        raise BackupError("; ".join(problems) + " -- run `medvault scrub`")

    manifest = {
        "format": FORMAT,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(),
        "engine": vendor,
        "database_file": db_file.name,
        "database_sha256": _sha256_file(db_file),
        "database_bytes": db_file.stat().st_size,
        "migrations": _applied_migrations(),
        "blobs": blobs,
        "blob_count": len(blobs),
        "blob_bytes": sum(blobs.values()),
        "new_blob_count": new,
        "new_blob_bytes": new_bytes,
        "seconds": round(time.monotonic() - started, 3),
    }
    _write_json_durably(snap_dir / "manifest.json", manifest)
    (dest / "LATEST.tmp").write_text(name + "\n")
    os.replace(dest / "LATEST.tmp", dest / "LATEST")
    log(f"snapshot {name}: {len(blobs)} blobs, {new} new ({new_bytes} bytes)")
    return manifest


def resolve_snapshot(src: Path, name: str | None = None) -> tuple[Path, Path]:
    """(backup root, snapshot directory) for ``src`` = a backup root or a snapshot directory."""
    if (src / "manifest.json").is_file():
        return src.parent.parent, src
    if name is None:
        latest = src / "LATEST"
        if not latest.is_file():
            raise BackupError(f"{src} holds no complete snapshot")
        name = latest.read_text().strip()
    if name not in snapshot_names(src):
        raise BackupError(f"no complete snapshot named {name!r} in {src}")
    return src, src / "snapshots" / name


def load_manifest(snap_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((snap_dir / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{snap_dir} is not a {FORMAT} snapshot")
    return manifest


def backup_verify(*, src: Path, name: str | None = None) -> VerifyReport:
    """Re-hash the database copy and every blob that the snapshot lists."""
    root, snap_dir = resolve_snapshot(src, name)
    manifest = load_manifest(snap_dir)
    report = VerifyReport(snapshot=manifest["name"])
    db_file = snap_dir / manifest["database_file"]
    if not db_file.is_file():
        report.problems.append(f"database copy {db_file.name} is missing")
    elif _sha256_file(db_file) != manifest["database_sha256"]:
        report.problems.append(f"database copy {db_file.name} is corrupt")
    pool = FilesystemBlobStore(root / "blobs")
    for key, size in manifest["blobs"].items():
        report.checked_blobs += 1
        try:
            data = pool.get(key)
        except KeyError:
            report.problems.append(f"blob {key} is missing")
            continue
        if len(data) != size or hashlib.sha256(data).hexdigest() != key:
            report.problems.append(f"blob {key} is corrupt")
    return report


def installation_is_empty(store: Any) -> bool:
    from medvault.archive.models import Instance

    try:
        has_rows = Instance.objects.exists()
    except Exception:  # noqa: BLE001 - no tables yet is empty too
        has_rows = False
    has_blobs = next(iter(store.iter_keys()), None) is not None
    return not has_rows and not has_blobs


def _restore_database(db_file: Path, engine: str) -> None:
    vendor = connection.vendor
    if engine != vendor:
        raise BackupError(
            f"the snapshot holds a {engine} database but this installation uses {vendor}; "
            "restore into the same engine (then migrate data with dumpdata/loaddata if needed)"
        )
    db = _db_settings()
    if vendor == "sqlite":
        connection.ensure_connection()
        source = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
        try:
            # The online-backup API replaces the whole database page by page, in place, so
            # it works for file and in-memory databases alike.
            source.backup(connection.connection)
        finally:
            source.close()
        return
    connections.close_all()
    if vendor == "postgresql":
        _run(
            [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
             "--single-transaction", "--exit-on-error", *_pg_args(db), "-d", str(db["NAME"]),
             str(db_file)],
            env=_pg_env(db),
        )
    elif vendor == "mysql":
        with db_file.open("rb") as handle:
            result = subprocess.run(
                [_tool("mariadb", "mysql"), *_my_args(db), str(db["NAME"])],
                stdin=handle, capture_output=True,
            )
        if result.returncode != 0:
            raise BackupError(f"mariadb failed: {result.stderr.decode(errors='replace')}")
    else:  # pragma: no cover
        raise BackupError(f"restore does not support the {vendor} database engine")


def backup_restore(
    *, src: Path, store: Any, name: str | None = None, force: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Restore one snapshot: blobs first (each re-hashed), then the database."""
    root, snap_dir = resolve_snapshot(src, name)
    manifest = load_manifest(snap_dir)
    if not force and not installation_is_empty(store):
        raise BackupError(
            "this installation is not empty (it has instances or blobs); restore into an empty "
            "one, or pass --force to replace its database with the snapshot"
        )
    db_file = snap_dir / manifest["database_file"]
    if not db_file.is_file() or _sha256_file(db_file) != manifest["database_sha256"]:
        raise BackupError(f"the database copy in {snap_dir} is missing or corrupt")
    pool = FilesystemBlobStore(root / "blobs")
    copied = 0
    # Blobs before rows, as at ingest: a crash half-way leaves orphans, never dangling rows.
    for key, size in manifest["blobs"].items():
        if store.exists(key):
            continue
        try:
            data = pool.get(key)
        except KeyError:
            raise BackupError(f"blob {key} is missing from the backup") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != key:
            raise BackupError(f"blob {key} in the backup is corrupt")
        store.put(data)
        copied += 1
    log(f"{copied} blobs copied into the blob store")
    with tempfile.TemporaryDirectory() as tmp:
        # Restore from a private copy so that the backup itself is never opened for writing.
        work = Path(tmp) / db_file.name
        shutil.copyfile(db_file, work)
        _restore_database(work, manifest["engine"])
    log(f"database restored from snapshot {manifest['name']}")
    return {"snapshot": manifest["name"], "blobs": len(manifest["blobs"]), "blobs_copied": copied}
