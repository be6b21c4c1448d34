"""CompressionTask becomes a row of the shared lease queue (``medvault.archive.jobs``): it gets
the queue's ``status``. Swapped tasks (kept until their old blob may go) are ``done``; the
rest stay ``queued``/leased as they were, and tasks out of attempts are failed by the queue's
own sweep on the next claim."""

from django.db import migrations, models


def status_from_swap(apps, schema_editor):  # type: ignore[no-untyped-def]
    task = apps.get_model("archive", "CompressionTask")
    task.objects.filter(swapped_at__isnull=False).update(status="done")
    task.objects.filter(swapped_at__isnull=True, lease_until__isnull=False).update(status="running")


class Migration(migrations.Migration):
    dependencies = [("archive", "0006_name_trigram_indexes")]

    operations = [
        migrations.AddField(
            model_name="compressiontask",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                default="queued",
                max_length=16,
            ),
        ),
        migrations.RunPython(status_from_swap, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="compressiontask", name="archive_compress_claim"),
        migrations.AddIndex(
            model_name="compressiontask",
            index=models.Index(fields=["status", "lease_until"], name="archive_compress_claim"),
        ),
    ]
