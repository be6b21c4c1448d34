from django.apps import AppConfig


class RetrievalConfig(AppConfig):
    name = "medvault.retrieval"
    label = "retrieval"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every new analysis result brings its image's embedding to similar-image search;
        # analysis sits below retrieval and does not import it.
        from medvault.analysis.services import register_result_hook
        from medvault.retrieval.services import result_embedding_store

        register_result_hook(result_embedding_store)
