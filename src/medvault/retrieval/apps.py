from django.apps import AppConfig


class RetrievalConfig(AppConfig):
    name = "medvault.retrieval"
    label = "retrieval"
    default_auto_field = "django.db.models.BigAutoField"
