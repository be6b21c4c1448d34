"""Trigram indexes for wildcard matching on PostgreSQL (issue 15, query cost as the archive grows).

QIDO-RS and C-FIND turn a DICOM wildcard into ``LIKE`` (``medvault.archive.query.wildcard``):
``LOWER(patient_name) LIKE 'smith^jo%'`` for person names (case-insensitive, also each arm of
fuzzy matching), ``col LIKE 'ACC12%'`` for other strings. A B-tree cannot answer a ``LIKE``
whose pattern starts with ``%``, and under a non-C collation not even a prefix, so each name
search read every patient row (about 0.4 us a row: half a second at 1M studies). A GIN
index with ``pg_trgm``'s ``gin_trgm_ops`` answers prefix, infix and suffix ``LIKE`` alike.

Indexed, on the exact expressions the lookups emit:

* ``LOWER(patient_name)`` and ``LOWER(referring_physician_name)``: the PN keys;
* ``patient_id``, ``accession_number``, ``study_description``: the string keys that
  RIS/PACS users search with wildcards (``PatientID=12345*``, ``StudyDescription=*CHEST*``).
  Their exact matches keep using the B-tree indexes they already have.

PostgreSQL only: SQLite and MariaDB have no trigram index, and this migration does nothing
there. ``pg_trgm`` is a trusted extension since PostgreSQL 13 (a database owner may create
it), but a site may run MedVault as a role that cannot: then the migration still succeeds,
logs a warning, and name searches scan as before; a database administrator can later run
``CREATE EXTENSION pg_trgm`` in the database and ``medvault migrate archive 0005`` followed
by ``medvault migrate``, or create the indexes below by hand.

Building the indexes takes a write lock on ``archive_patient`` and ``archive_study`` for
the duration (all five: 19-27 s at 1M studies on a loaded 2-core VM): run the upgrade
in a maintenance window on a large archive.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger("medvault.archive")

# (index name, table, indexed expression): the expressions are the ones the lookups emit.
TRIGRAM_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("archive_patient_name_lower_trgm", "archive_patient", "LOWER(patient_name)"),
    ("archive_patient_id_trgm", "archive_patient", "patient_id"),
    ("archive_study_referring_lower_trgm", "archive_study", "LOWER(referring_physician_name)"),
    ("archive_study_accession_trgm", "archive_study", "accession_number"),
    ("archive_study_description_trgm", "archive_study", "study_description"),
)


def _trgm_available(schema_editor) -> bool:  # type: ignore[no-untyped-def]
    """True once ``pg_trgm`` is installed in this database (creating it if we may)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone():
            return True
        try:
            with transaction.atomic(using=connection.alias):  # a savepoint: a refusal must not end the migration
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = (
                f"archive: the PostgreSQL extension pg_trgm could not be created ({reason}); "
                "PatientName and other wildcard searches will scan their tables. A database "
                "administrator can run CREATE EXTENSION pg_trgm in this database, then "
                "`medvault migrate archive 0005` and `medvault migrate` build the indexes."
            )
            logger.warning(message)
            return False
    return True


def trigram_indexes_create(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    if not _trgm_available(schema_editor):
        return
    with schema_editor.connection.cursor() as cursor:
        for name, table, expression in TRIGRAM_INDEXES:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) gin_trgm_ops)")


def trigram_indexes_drop(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, _table, _expression in TRIGRAM_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
    # The extension stays: other objects may use it, and dropping it needs the privilege that
    # creating it did.


class Migration(migrations.Migration):

    dependencies = [
        ("archive", "0005_patient_group"),
    ]

    operations = [
        migrations.RunPython(trigram_indexes_create, trigram_indexes_drop, elidable=False),
    ]
