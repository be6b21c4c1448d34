"""Run as a separate process by ``test_jobs.py`` (never imported by pytest).

    python jobs_procs.py seed                      -> JSON id of a new queued row
    python jobs_procs.py work ID LEASE HOLD STARTED -> claim row ID with a LEASE s lease, note
                                                       it in STARTED, work HOLD s, store the
                                                       result under the claim; prints JSON
    python jobs_procs.py state ID                  -> JSON of the row

The rows are storage commitment reports (``dimse.commitment.REPORTS``), the queue kind with no
foreign key to fill in; the claim, lease, fencing and retry code is ``medvault.archive.jobs``,
shared by every kind. The settings (DATABASE_URL, ...) come from the environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medvault.web.settings")
    import django

    django.setup()
    from django.utils import timezone

    from medvault.dimse.commitment import REPORTS
    from medvault.dimse.models import StorageCommitment

    command = argv[0]
    if command == "seed":
        row = StorageCommitment.objects.create(
            transaction_uid="1.2.3", ae_title="PEER", requested=[], next_attempt_at=timezone.now()
        )
        print(json.dumps(row.pk))
    elif command == "work":
        pk, lease, hold, started = int(argv[1]), float(argv[2]), float(argv[3]), Path(argv[4])
        job = REPORTS.claim(worker_id="", lease=lease, pk=pk)
        if job is None:
            print(json.dumps({"claimed": False}))
            return
        with started.open("a") as handle:
            handle.write(f"{os.getpid()} {job.attempts}\n")
        time.sleep(hold)
        # The result, written only while this attempt owns the row, then the row done.
        stored = REPORTS.owned(job).update(result={"by": os.getpid(), "attempt": job.attempts})
        done = REPORTS.complete(job, delivered_at=timezone.now())
        print(json.dumps({"claimed": True, "stored": bool(stored), "done": done, "attempt": job.attempts}))
    elif command == "state":
        row = StorageCommitment.objects.values("state", "attempts", "result", "last_error").get(pk=int(argv[1]))
        print(json.dumps(row))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
