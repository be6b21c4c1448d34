from django.apps import AppConfig


class ArchiveConfig(AppConfig):
    name = "medvault.archive"
    label = "archive"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from medvault.archive.compression import superseded_blob_refs
        from medvault.archive.services import register_blob_referrer

        # Blobs replaced by deferred compression are kept a while (for backups in flight):
        # scrub must neither report nor delete them until then.
        register_blob_referrer(superseded_blob_refs)
