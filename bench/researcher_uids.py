"""What researchers' pseudonymous UIDs cost: the same requests by a clinician and a researcher.

Run:

    .venv/bin/python bench/researcher_uids.py [--instances 200] [--repeat 11]

A throw-away installation (SQLite file) gets one study of ``--instances`` CT instances (pydicom's
CT_small.dcm, each with its own SOP Instance UID) in one group. Timed through Django's full
request stack, for a clinician (original UIDs) and a researcher (``ResearcherUidMiddleware``:
pseudonyms out, resolution in, plus de-identification):

* ``GET /dicomweb/studies/{study}/metadata`` (every instance's DICOM JSON);
* ``GET /dicomweb/studies/{study}/instances`` (QIDO-RS);
* ``GET /studies/{study}/`` and ``GET /viewer/{study}/`` (pages).

Prints one JSON object: p50/p95/max in milliseconds and the researcher/clinician ratio of p50.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "accounts"))

from latency import summary  # noqa: E402
from throwaway import bench_clinician, throwaway_installation  # noqa: E402


def _store(n: int, user, group) -> str:
    import pydicom
    from mvfixtures import sample_bytes
    from pydicom.uid import generate_uid

    from medvault.archive.uploads import upload_store

    template = pydicom.dcmread(io.BytesIO(sample_bytes()))
    study, series = generate_uid(), generate_uid()
    for i in range(n):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = generate_uid()
        template.InstanceNumber = i + 1
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        [result] = upload_store(name=f"{i}.dcm", data=buffer.getvalue(), source="bench",
                                user=user, group=group)
        assert result.status == "stored", result.reason
    return study


def _time(client, url: str, repeat: int, accept: str = "") -> list[float]:
    out = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(url, **({"HTTP_ACCEPT": accept} if accept else {}))
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return out[1:]  # the first warms caches (and records the researcher's pseudonyms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    tmp = throwaway_installation("mv-bench-researcher-uids-")
    from django.test import Client

    from medvault.accounts.models import User

    try:
        from medvault.accounts.deid import uid_pseudonym
    except ImportError:  # a checkout from before pseudonymous UIDs (to compare): the original
        uid_pseudonym = str

    clinician, group = bench_clinician()
    researcher = User.objects.create_user("bench-r", password="x" * 12, role="researcher",
                                          status="approved")
    researcher.groups.add(group)
    study = _store(args.instances, clinician, group)
    json_accept = "application/dicom+json"
    result: dict[str, Any] = {"instances": args.instances}
    for who, user, uid in (("clinician", clinician, study),
                           ("researcher", researcher, uid_pseudonym(study))):
        client = Client()
        client.force_login(user)
        # A researcher learns the pseudonym from a listing first (that records it).
        assert client.get("/dicomweb/studies", HTTP_ACCEPT=json_accept).status_code == 200
        base = f"/dicomweb/studies/{uid}"
        result[who] = {
            "metadata_ms": summary(_time(client, f"{base}/metadata", args.repeat, json_accept)),
            "qido_instances_ms": summary(
                _time(client, f"{base}/instances", args.repeat, json_accept)),
            "study_page_ms": summary(_time(client, f"/studies/{uid}/", args.repeat)),
            "viewer_page_ms": summary(_time(client, f"/viewer/{uid}/", args.repeat)),
        }
    clin, res = result["clinician"], result["researcher"]
    ratios = {key: round(res[key]["p50"] / clin[key]["p50"], 2) for key in clin}
    result["ratio_researcher_to_clinician_p50"] = ratios
    print(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
