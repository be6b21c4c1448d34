"""Run as a separate process by the multi-process worker tests (never imported by pytest).

    python procs.py seed COUNT MODEL     -> JSON list of job ids
    python procs.py state                -> JSON {"jobs": [...], "results": [...]}
    python procs.py reset                -> remove every job and result

It uses the same settings (DATABASE_URL, MEDVAULT_BLOB_DIR, ...) as the workers under test.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medvault.web.settings")
    import django

    django.setup()
    import helpers

    from medvault.analysis import services
    from medvault.analysis.models import AnalysisJob, AnalysisResult

    command = argv[0]
    if command == "seed":
        count, model = int(argv[1]), argv[2]
        ids = []
        for _ in range(count):
            instance = helpers.store(helpers.dicom_bytes())
            ids.append(services.job_enqueue(instance=instance, model_name=model).pk)
        print(json.dumps(ids))
    elif command == "state":
        jobs = list(
            AnalysisJob.objects.order_by("id").values(
                "id", "status", "attempts", "worker_id", "error"
            )
        )
        results = list(AnalysisResult.objects.order_by("id").values("id", "job_id", "label"))
        print(json.dumps({"jobs": jobs, "results": results}))
    elif command == "reset":
        AnalysisResult.objects.all().delete()
        AnalysisJob.objects.all().delete()
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
