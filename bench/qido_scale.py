"""QIDO-RS and C-FIND cost as the index grows (issue 15): 10k, 100k, 1M studies on PostgreSQL.

Run:

    .venv/bin/python bench/qido_scale.py [--sizes 10000,100000,1000000] [--repeat 21]
        [--pg postgres://postgres@127.0.0.1:5432]

A throw-away PostgreSQL database (``mv_bench_qido_scale_<pid>``, created on the server that
``--pg`` names and dropped at the end) is migrated, so it carries the trigram indexes of
archive migration 0006, then filled with bulk SQL (``INSERT ... SELECT generate_series``,
not ingest): each study has its patient, one series and one instance row. Names are
``FAMILY^GIVEN`` drawn from about 3,000 family and 1,500 given names, PatientIDs and
accession numbers are unique, study dates span 20 years, modalities are weighted like a
general hospital's (CT, MR, CR, US, MG, PT, NM), and 80 % of the studies belong to the
group of the measuring user and AE (the rest to two other groups), so the visibility filter
of a non-administrator is part of every query.

At each size, every key is timed with the trigram indexes in place and then with them
dropped (the baseline, same run, same data; they are rebuilt before the next fill):

* QIDO-RS ``GET /dicomweb/studies?...`` through Django's whole request stack (test
  ``Client``, a logged-in clinician: middleware, view, permission, audit record, JSON);
* C-FIND at the STUDY level through the real handler, ``dimse.handlers.handle_find``, with an
  event object as pynetdicom would pass it (a configured AE in the user's group), every
  response dataset built; no network (the DIMSE encoding is not what grows with the index).

Keys: PatientID exact, AccessionNumber exact, StudyDate range (QIDO: one year, limit=100;
C-FIND: three days, every match returned, as C-FIND has no limit), PatientName prefix
``FAMILY^GIV*``, PatientName substring ``*AMIL*`` (five letters inside a family name),
fuzzy PatientName ``family given`` (fuzzymatching=true; C-FIND has no fuzzy matching, so it
gets ``FAMILY^GIVEN*``), ModalitiesInStudy=MG (QIDO: limit=100; C-FIND: with a one-day
StudyDate, since alone it would return 5 % of the archive), StudyInstanceUID, and issue 13's
hostile pattern ``*A*A...*B`` (no trigram to use: it must not get slower with the indexes).
Name substring asks QIDO for ``limit=101`` (one page of a study list).

Prints progress on stderr and one JSON object as its last line: p50/p95/max in ms per key,
door (qido, cfind), size and index state, the matches each returned, the ratio of the
baseline's p95 to the indexed p95, and at the largest size the SQL and ``EXPLAIN (ANALYZE,
BUFFERS)`` of each QIDO-RS search.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from latency import summary  # noqa: E402
from throwaway import bench_clinician, throwaway_installation  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.8.498.15."
HOSTILE = "*A" * 20 + "*B"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MODALITIES = ["CT"] * 35 + ["MR"] * 25 + ["CR"] * 20 + ["US"] * 10 + ["MG"] * 5 + ["PT"] * 3 + ["NM"] * 2
DESCRIPTIONS = [
    "CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD W/O CONTRAST", "MR BRAIN W/WO",
    "MR KNEE LEFT", "MR LUMBAR SPINE", "XR CHEST 2 VIEWS", "XR HAND RIGHT", "US ABDOMEN COMPLETE",
    "US THYROID", "MG SCREENING BILATERAL", "PET CT WHOLE BODY", "NM BONE SCAN", "CT ANGIO CHEST PE",
    "MR PROSTATE", "XR KNEE BILATERAL", "CT SINUS", "MR SHOULDER RIGHT", "US RENAL", "CT CARDIAC CALCIUM",
]


def _names(rng: random.Random, count: int, syllables: int) -> list[str]:
    """Pronounceable upper-case names (``KARVONEN``, ``TOMASI``), distinct."""
    onsets = ["", "B", "BR", "C", "CH", "D", "F", "G", "GR", "H", "J", "K", "KR", "L", "M", "N", "P", "R",
              "S", "SH", "ST", "T", "TR", "V", "W", "Z"]
    vowels = ["A", "E", "I", "O", "U", "AI", "EA", "OU", "Y"]
    codas = ["", "", "N", "R", "L", "S", "M", "NS", "RT", "LD", "CK", "TH", "X"]
    out: set[str] = set()
    while len(out) < count:
        n = rng.choice(range(2, syllables + 1))
        out.add("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(n)))
    return sorted(out)


def _pools() -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(15)
    families = ["SMITH", "JOHNSON", "GARCIA", "MULLER", "NGUYEN", "KOWALSKI", "OKAFOR", "TANAKA"]
    families += [n for n in _names(rng, 3000, 3) if n not in families][: 3000 - len(families)]
    givens = ["JOHN", "MARY", "ANNA", "JAMES", "MARIA", "ALI", "CHEN", "OLGA"]
    givens += [n for n in _names(rng, 1500, 2) if n not in givens][: 1500 - len(givens)]
    physicians = [f"{rng.choice(families)}^{rng.choice(givens)}^^DR" for _ in range(300)]
    return families, givens, physicians


# One statement per table; %(lo)s..%(hi)s are the study numbers (also the row ids of every
# table, so no lookups are needed). h(i, salt) is a deterministic pseudo-random int >= 0.
_FILL = [
    """INSERT INTO archive_patient (id, patient_id, issuer_of_patient_id, patient_name, patient_birth_date,
           patient_sex, created_at, group_id)
       SELECT i, 'MV' || lpad(i::text, 8, '0'), '',
              (%(families)s::text[])[1 + (hashint8(i) & 2147483647) %% %(nf)s] || '^' ||
              (%(givens)s::text[])[1 + (hashint8(i + 7919) & 2147483647) %% %(ng)s],
              date '1930-01-01' + ((hashint8(i + 31) & 2147483647) %% 30000)::int,
              CASE WHEN i %% 2 = 0 THEN 'F' ELSE 'M' END, now(),
              CASE WHEN i %% 10 < 8 THEN %(g0)s WHEN i %% 10 = 8 THEN %(g1)s ELSE %(g2)s END
       FROM generate_series(%(lo)s, %(hi)s) AS i""",
    """INSERT INTO archive_study (id, study_instance_uid, study_date, study_time, accession_number,
           study_description, study_id, referring_physician_name, modalities_in_study, number_of_series,
           number_of_instances, created_at, updated_at, group_id, patient_id)
       SELECT i, %(uid)s::text || i, date '2006-01-01' + ((hashint8(i + 101) & 2147483647) %% 7300)::int,
              lpad(((hashint8(i + 5) & 2147483647) %% 240000)::text, 6, '0'),
              'RAD' || lpad(i::text, 9, '0'),
              (%(descriptions)s::text[])[1 + (hashint8(i + 3) & 2147483647) %% %(nd)s],
              (i %% 100000)::text,
              (%(physicians)s::text[])[1 + (hashint8(i + 11) & 2147483647) %% %(np)s],
              (%(modalities)s::text[])[1 + (hashint8(i + 17) & 2147483647) %% %(nm)s],
              1, 1, now(), now(),
              CASE WHEN i %% 10 < 8 THEN %(g0)s WHEN i %% 10 = 8 THEN %(g1)s ELSE %(g2)s END, i
       FROM generate_series(%(lo)s, %(hi)s) AS i""",
    """INSERT INTO archive_series (id, series_instance_uid, modality, series_number, series_description,
           body_part_examined, number_of_instances, created_at, study_id)
       SELECT i, %(uid)s::text || i || '.1', (%(modalities)s::text[])[1 + (hashint8(i + 17) & 2147483647) %% %(nm)s],
              1, 'AXIAL', 'CHEST', 1, now(), i
       FROM generate_series(%(lo)s, %(hi)s) AS i""",
    """INSERT INTO archive_instance (id, sop_instance_uid, sop_class_uid, instance_number, rows, columns,
           bits_allocated, number_of_frames, received_transfer_syntax_uid, transfer_syntax_uid, blob_key,
           pixel_sha256, content_sha256, received_bytes, stored_bytes, raw_pixel_bytes, metadata, source,
           created_at, uploaded_by_id, series_id)
       SELECT i, %(uid)s::text || i || '.1.1', '1.2.840.10008.5.1.4.1.1.2', 1, 512, 512, 16, 1,
              '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1', md5(i::text) || md5(i::text), '',
              md5(i::text) || md5(i::text), 524288, 524288, 524288, '{}'::jsonb, 'bench', now(), NULL, i
       FROM generate_series(%(lo)s, %(hi)s) AS i""",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _fill(lo: int, hi: int, params: dict[str, Any]) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(lo, hi + 1, 200_000):
            stop = min(hi, start + 199_999)
            for statement in _FILL:
                cursor.execute(statement, {**params, "lo": start, "hi": stop})
        for table in ("archive_patient", "archive_study", "archive_series", "archive_instance"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {hi})")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE archive_patient")
        cursor.execute("VACUUM ANALYZE archive_study")
        cursor.execute("VACUUM ANALYZE archive_series")
        cursor.execute("VACUUM ANALYZE archive_instance")


def _indexes(create: bool) -> float:
    """Create (migration 0006's statements) or drop the trigram indexes; seconds taken."""
    from django.db import connection

    module = importlib.import_module("medvault.archive.migrations.0006_name_trigram_indexes")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for name, table, expression in module.TRIGRAM_INDEXES:
            if create:
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) gin_trgm_ops)")
            else:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
        if create:
            cursor.execute("ANALYZE archive_patient")
            cursor.execute("ANALYZE archive_study")
    return time.perf_counter() - started


def _keys(size: int, families: list[str], givens: list[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """(QIDO parameters, C-FIND identifier keywords) per key, for a patient in the user's group."""
    from django.db import connection

    i = (size // 2) // 10 * 10 + 3  # i % 10 == 3: in the measuring group
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.patient_id, p.patient_name, s.accession_number, s.study_instance_uid FROM archive_study s "
            "JOIN archive_patient p ON p.id = s.patient_id WHERE s.id = %s", [i])
        patient_id, name, accession, uid = cursor.fetchone()
    family, given = name.split("^")
    infix = family[1:6] if len(family) >= 6 else family[:5]
    return {
        "PatientID exact": ({"PatientID": patient_id}, {"PatientID": patient_id}),
        "AccessionNumber exact": ({"AccessionNumber": accession}, {"AccessionNumber": accession}),
        "StudyDate range": ({"StudyDate": "20150101-20151231", "limit": "100"}, {"StudyDate": "20150301-20150303"}),
        "PatientName prefix": ({"PatientName": f"{family}^{given[:3]}*"}, {"PatientName": f"{family}^{given[:3]}*"}),
        "PatientName substring": ({"PatientName": f"*{infix}*", "limit": "101"}, {"PatientName": f"*{infix}*"}),
        "PatientName fuzzy": ({"PatientName": f"{family.lower()} {given.lower()}", "fuzzymatching": "true"},
                              {"PatientName": f"{family}^{given}*"}),
        "ModalitiesInStudy": ({"ModalitiesInStudy": "MG", "limit": "100"},
                              {"ModalitiesInStudy": "MG", "StudyDate": "20150302"}),
        "StudyInstanceUID": ({"StudyInstanceUID": uid}, {"StudyInstanceUID": uid}),
        # Issue 13's hostile pattern: no trigram can be taken from it, so no index can help; it
        # must not get slower with the indexes (a full GIN index scan) than without.
        "PatientName hostile": ({"PatientName": HOSTILE}, {"PatientName": HOSTILE}),
    }


def _qido(client: Any, params: dict[str, str], repeat: int) -> tuple[list[float], int]:
    times, count = [], 0
    for n in range(repeat + 1):
        started = time.perf_counter()
        response = client.get("/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json")
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code in (200, 204), response.content[:300]
        count = len(json.loads(response.content)) if response.content else 0
        if n:  # the first warms caches
            times.append(elapsed)
    return times, count


def _explain(client: Any, params: dict[str, str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement a QIDO-RS request ran to find its studies."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get("/dicomweb/studies", params, HTTP_ACCEPT="application/dicom+json")
    found = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith('SELECT "archive_study"."id"') and "LIMIT" in q["sql"]]
    if not found:
        return ["(no study search statement captured)"]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {found[0]}")
        return [found[0]] + [row[0] for row in cursor.fetchall()]


def _cfind(ae_title: str, keywords: dict[str, str], repeat: int) -> tuple[list[float], int]:
    from pydicom.dataset import Dataset

    from medvault.dimse.handlers import handle_find

    times, count = [], 0
    for n in range(repeat + 1):
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for keyword in ("PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyInstanceUID",
                        "ModalitiesInStudy", "StudyDescription"):
            setattr(identifier, keyword, keywords.get(keyword, ""))
        event = SimpleNamespace(  # what handle_find reads of pynetdicom's Event; one association per query
            identifier=identifier, is_cancelled=False,
            request=SimpleNamespace(AffectedSOPClassUID=STUDY_ROOT_FIND),
            assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title=ae_title, address="127.0.0.1", port=11112),
                                  acceptor=SimpleNamespace(ae_title="MEDVAULT")),
        )
        started = time.perf_counter()
        statuses = [status for status, _ in handle_find(event)]  # type: ignore[arg-type]
        elapsed = (time.perf_counter() - started) * 1000
        assert statuses[-1] == 0x0000, hex(statuses[-1])
        count = len(statuses) - 1
        if n:
            times.append(elapsed)
    return times, count


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="study counts, ascending")
    parser.add_argument("--repeat", type=int, default=21, help="timed runs per key (after one warm-up)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    import psycopg

    database = f"mv_bench_qido_scale_{os.getpid()}"
    admin_url = f"{args.pg.rstrip('/')}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    tmp = None
    try:
        tmp = throwaway_installation("mv-bench-qido-scale-", DATABASE_URL=f"{args.pg.rstrip('/')}/{database}",
                                     MEDVAULT_DICOM_CHECK_HOST="0")
        result = _run(sizes, args.repeat)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


def _run(sizes: list[int], repeat: int) -> dict[str, Any]:
    import subprocess

    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client

    from medvault.dimse.models import RemoteAE

    user, group = bench_clinician("radiology")
    others = [Group.objects.create(name="cardiology"), Group.objects.create(name="research")]
    RemoteAE.objects.create(ae_title="BENCHSCU", host="127.0.0.1", port=11112, group=group)
    families, givens, physicians = _pools()
    params = {
        "families": families, "nf": len(families), "givens": givens, "ng": len(givens),
        "physicians": physicians, "np": len(physicians), "descriptions": DESCRIPTIONS, "nd": len(DESCRIPTIONS),
        "modalities": MODALITIES, "nm": len(MODALITIES), "uid": UID_ROOT,
        "g0": group.pk, "g1": others[0].pk, "g2": others[1].pk,
    }
    client = Client()
    client.force_login(user)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        server = cursor.fetchone()[0].split(" on ")[0]
    result: dict[str, Any] = {
        "benchmark": "qido_scale", "database": server, "commit": commit, "cpus": os.cpu_count(),
        "repeat": repeat, "principal": "clinician in group radiology (80 % of studies); AE BENCHSCU same group",
        "sizes": {},
    }
    filled = 0
    for size in sizes:
        started = time.perf_counter()
        _indexes(create=False)  # rebuilding is faster than maintaining them row by row
        _fill(filled + 1, size, params)
        fill_s = time.perf_counter() - started
        index_s = _indexes(create=True)
        filled = size
        log(f"{size} studies: filled in {fill_s:.0f} s, trigram indexes built in {index_s:.1f} s")
        keys = _keys(size, families, givens)
        entry: dict[str, Any] = {"fill_s": round(fill_s, 1), "trigram_build_s": round(index_s, 1),
                                 "load_before": _load(), "keys": {}}
        for state in ("indexed", "baseline"):
            if state == "baseline":
                _indexes(create=False)
            for key, (qido_params, cfind_keys) in keys.items():
                qido, qido_count = _qido(client, qido_params, repeat)
                cfind, cfind_count = _cfind("BENCHSCU", cfind_keys, repeat)
                row = entry["keys"].setdefault(key, {"qido_params": qido_params, "cfind_keys": cfind_keys})
                row[state] = {"qido_ms": summary(qido), "qido_matches": qido_count,
                              "cfind_ms": summary(cfind), "cfind_matches": cfind_count}
                if size == sizes[-1]:
                    row[state]["qido_explain"] = _explain(client, qido_params)
                log(f"{size} {state:8} {key:22} QIDO p50 {summary(qido)['p50']:7.1f} p95 {summary(qido)['p95']:7.1f}"
                    f" ({qido_count})  C-FIND p50 {summary(cfind)['p50']:7.1f} p95 {summary(cfind)['p95']:7.1f}"
                    f" ({cfind_count})")
        for row in entry["keys"].values():
            row["baseline_over_indexed_p95"] = {
                door: round(row["baseline"][f"{door}_ms"]["p95"] / max(row["indexed"][f"{door}_ms"]["p95"], 1e-6), 2)
                for door in ("qido", "cfind")
            }
        entry["load_after"] = _load()
        entry["qido_p95_max_indexed_ms"] = max(r["indexed"]["qido_ms"]["p95"] for r in entry["keys"].values())
        result["sizes"][str(size)] = entry
    return result


if __name__ == "__main__":
    main()
