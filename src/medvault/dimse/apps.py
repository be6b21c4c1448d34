from django.apps import AppConfig


class DimseConfig(AppConfig):
    name = "medvault.dimse"
    label = "dimse"
    default_auto_field = "django.db.models.BigAutoField"
