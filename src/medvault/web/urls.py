"""Top-level URL map: each Django app owns its own ``urls.py``."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("medvault.accounts.urls")),
    path("dicomweb/", include("medvault.dicomweb.urls")),
    path("api/v1/", include("medvault.analysis.urls")),
    path("api/v1/", include("medvault.retrieval.urls")),
    path("similar/", include("medvault.retrieval.page_urls")),
    path("api/v1/", include("medvault.archive.urls")),
    path("", include("medvault.ops.urls")),
    path("", include("medvault.ui.urls")),
]

# A database outage or a full blob store gets a clear 503/507 instead of a bare 500.
handler500 = "medvault.ops.views.server_error"
