from django.contrib import admin

from medvault.dimse.models import RemoteAE


@admin.register(RemoteAE)
class RemoteAEAdmin(admin.ModelAdmin):
    list_display = ("ae_title", "host", "port", "group", "may_store", "may_query", "may_retrieve")
    list_filter = ("group", "may_store", "may_query", "may_retrieve")
    search_fields = ("ae_title", "host", "description")
