from django.apps import AppConfig


class DicomwebConfig(AppConfig):
    name = "medvault.dicomweb"
    label = "dicomweb"
    default_auto_field = "django.db.models.BigAutoField"
