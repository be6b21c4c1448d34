"""Migration archive 0007: compression tasks join the shared lease queue and keep what they
were: a swapped task is done, a leased one running, the rest queued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("archive", "0006_name_trigram_indexes")]
AFTER = [("archive", "0007_compressiontask_status")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_compression_tasks_keep_their_state() -> None:
    old = _migrate(BEFORE)
    try:
        Patient = old.get_model("archive", "Patient")
        Study = old.get_model("archive", "Study")
        Series = old.get_model("archive", "Series")
        Instance = old.get_model("archive", "Instance")
        Task = old.get_model("archive", "CompressionTask")
        series = Series.objects.create(
            series_instance_uid="1.2.9.1",
            study=Study.objects.create(study_instance_uid="1.2.9", patient=Patient.objects.create(patient_id="P")),
        )
        now = timezone.now()
        kinds = {"swapped": {"swapped_at": now, "old_blob_key": "1" * 64},
                 "leased": {"lease_until": now + timedelta(minutes=5), "worker_id": "w", "attempts": 1},
                 "waiting": {}}
        for n, fields in enumerate(kinds.values()):
            instance = Instance.objects.create(
                sop_instance_uid=f"1.2.9.1.{n}", series=series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                received_transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                blob_key="0" * 64, content_sha256="0" * 64, received_bytes=0, stored_bytes=0, metadata={},
            )
            Task.objects.create(instance=instance, **fields)
        new = _migrate(AFTER)
        Task = new.get_model("archive", "CompressionTask")
        status = dict(Task.objects.values_list("instance__sop_instance_uid", "status"))
        assert status == {"1.2.9.1.0": "done", "1.2.9.1.1": "running", "1.2.9.1.2": "queued"}
        leased = Task.objects.get(instance__sop_instance_uid="1.2.9.1.1")
        assert leased.attempts == 1 and leased.worker_id == "w"  # nothing else changed
    finally:
        call_command("migrate", verbosity=0)
