import logging

from django.apps import AppConfig

log = logging.getLogger(__name__)


class AnalysisConfig(AppConfig):
    name = "medvault.analysis"
    label = "analysis"
    verbose_name = "Analysis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every new instance, whichever door it came through, gets the analyses that apply.
        try:
            from medvault.archive.indexing import register_stored_hook
        except ImportError:  # the archive's hook API is not there (yet): ingest without jobs
            log.warning(
                "medvault.archive.indexing.register_stored_hook is missing; "
                "images will not be analysed automatically on ingest"
            )
            return
        from medvault.analysis.selectors import heatmap_blob_refs
        from medvault.analysis.services import stored_hook

        register_stored_hook(stored_hook)
        try:
            from medvault.archive.scrub import register_blob_referrer
        except ImportError:
            log.warning("medvault scrub does not know about heat-map blobs")
        else:
            # Heat-maps share the blob store with images: scrub must not call them orphans.
            register_blob_referrer(heatmap_blob_refs)
