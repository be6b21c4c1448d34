from django.apps import AppConfig


class ArchiveConfig(AppConfig):
    name = "medvault.archive"
    label = "archive"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from medvault.archive.compression import new_blob_refs, superseded_blob_refs
        from medvault.archive.scrub import register_blob_referrer

        # Blobs replaced by deferred compression are kept a while (for backups in flight):
        # scrub must neither report nor delete them until then.
        register_blob_referrer(superseded_blob_refs)
        # A worker's re-encoded blob is recorded on its task before it is written: scrub must
        # not delete it as an orphan before (or after) the row is swapped to it.
        register_blob_referrer(new_blob_refs)
