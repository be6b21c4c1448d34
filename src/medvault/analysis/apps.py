from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "medvault.analysis"
    label = "analysis"
    verbose_name = "Analysis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from medvault.analysis.selectors import heatmap_blob_refs
        from medvault.analysis.services import stored_hook
        from medvault.archive.indexing import register_stored_hook
        from medvault.archive.scrub import register_blob_referrer

        # Every new instance, whichever door it came through, gets the analyses that apply.
        register_stored_hook(stored_hook)
        # Heat-maps share the blob store with images: scrub must not call them orphans.
        register_blob_referrer(heatmap_blob_refs)
