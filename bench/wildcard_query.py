"""Worst-case DICOM wildcard search on 10k studies: QIDO-RS and the studies page.

Run:

    .venv/bin/python bench/wildcard_query.py [--studies 10000] [--repeat 11]
    DATABASE_URL=postgres://... .venv/bin/python bench/wildcard_query.py --keep-db   # PostgreSQL

A throw-away installation (SQLite file unless ``--keep-db`` with DATABASE_URL) gets
``--studies`` index-only studies in one group; one in ten patient names is 64 characters of
``A`` (the case that made a regex backtrack), the rest realistic. Timed through Django's full
request stack with a logged-in clinician:

* ``GET /dicomweb/studies?PatientName=*A*A*...*B`` (20 ``*A`` then ``*B``: the hostile pattern);
* ``GET /studies/?patient_name=<the same>`` (the studies page);
* baseline in the same run: ``GET /dicomweb/studies?PatientID=<one id>`` (an exact match).

It also times what the regex did (Python ``re``, which SQLite's REGEXP used) on ONE
64-character name for 3, 4 and 5 stars (6 took 8 s, 8 took 6 minutes), to show the growth the GLOB/LIKE matcher avoids.

Prints one JSON object: p50/p95/max in milliseconds, and ratios against the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from latency import summary  # noqa: E402
from throwaway import bench_clinician, throwaway_installation  # noqa: E402

EVIL = "*A" * 20 + "*B"


def _seed(n: int, group) -> None:
    import random

    from medvault.archive.models import Patient, Study

    rng = random.Random(13)
    given = ["Jane", "John", "Anna", "Bob", "Maria", "Ali", "Chen", "Olga"]
    family = ["Doe", "Smith", "Garcia", "Nguyen", "Müller", "Kowalski", "Okafor", "Tanaka"]
    patients = []
    for i in range(n):
        name = "A" * 64 if i % 10 == 0 else f"{rng.choice(family)}{i}^{rng.choice(given)}"
        patients.append(Patient(patient_id=f"BENCH{i:06d}", issuer_of_patient_id="", patient_name=name))
    Patient.objects.bulk_create(patients, batch_size=1000)
    ids = dict(Patient.objects.values_list("patient_id", "pk"))
    studies = [
        Study(study_instance_uid=f"1.2.826.0.1.3680043.8.498.13.{i}", patient_id=ids[f"BENCH{i:06d}"],
              group=group, study_description="Chest CT" if i % 2 else "Brain MR",
              modalities_in_study="CT" if i % 2 else "MR", accession_number=f"ACC{i}",
              study_date="2024-01-01", number_of_series=1, number_of_instances=1)
        for i in range(n)
    ]
    Study.objects.bulk_create(studies, batch_size=1000)


def _time(client, url: str, params: dict[str, str], repeat: int, accept: str = "") -> list[float]:
    out = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(url, params, **({"HTTP_ACCEPT": accept} if accept else {}))
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    return out[1:]  # the first warms caches


def _regex_ms(stars: int) -> float:
    pattern = "(?i)^" + ".*a" * stars + ".*b$"
    started = time.perf_counter()
    re.search(pattern, "A" * 64)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--keep-db", action="store_true", help="use DATABASE_URL as it is set")
    args = parser.parse_args()
    extra = {"DATABASE_URL": os.environ["DATABASE_URL"]} if args.keep_db else {}
    tmp = throwaway_installation("mv-bench-wildcard-", MEDVAULT_QIDO_MAX_RESULTS="1000", **extra)
    from django.db import connection
    from django.test import Client

    user, group = bench_clinician()
    _seed(args.studies, group)
    client = Client()
    client.force_login(user)
    json_accept = "application/dicom+json"
    qido = _time(client, "/dicomweb/studies", {"PatientName": EVIL}, args.repeat, json_accept)
    page = _time(client, "/studies/", {"patient_name": EVIL}, args.repeat)
    base = _time(client, "/dicomweb/studies", {"PatientID": "BENCH004242"}, args.repeat, json_accept)
    regex = {f"{k}_stars_one_name_ms": round(_regex_ms(k), 1) for k in (3, 4, 5)}
    result = {
        "database": connection.vendor,
        "studies": args.studies,
        "pattern": EVIL,
        "qido_evil_ms": summary(qido),
        "studies_page_evil_ms": summary(page),
        "baseline_exact_patient_id_ms": summary(base),
        "ratio_qido_to_baseline_p50": round(summary(qido)["p50"] / summary(base)["p50"], 2),
        "ratio_page_to_baseline_p50": round(summary(page)["p50"] / summary(base)["p50"], 2),
        "old_regex_python_re": regex,
    }
    print(json.dumps(result, indent=2))
    if args.keep_db:
        from medvault.archive.models import Patient, Study

        Study.objects.filter(study_instance_uid__startswith="1.2.826.0.1.3680043.8.498.13.").delete()
        Patient.objects.filter(patient_id__startswith="BENCH").delete()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
