from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "medvault.analysis"
    label = "analysis"
    default_auto_field = "django.db.models.BigAutoField"
