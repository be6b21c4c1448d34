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
            from medvault.archive.services import register_stored_hook
        except ImportError:  # the archive's hook API is not there (yet): ingest without jobs
            log.warning("medvault.archive.services.register_stored_hook is missing; "
                        "images will not be analysed automatically on ingest")
            return
        from medvault.analysis.services import stored_hook

        register_stored_hook(stored_hook)
