"""A URL map whose views fail the way infrastructure fails (for the middleware tests)."""

import errno

from django.contrib import admin
from django.db import DataError, OperationalError
from django.urls import include, path


def database_down(request):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed')


def disk_full(request):
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as exc:
        raise RuntimeError("could not store blob") from exc


def refused_value(request):
    raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")


def plain_bug(request):
    raise ValueError("a bug with a secret path /srv/x in its message")


urlpatterns = [
    path("db-down", database_down),
    path("disk-full", disk_full),
    path("bug", plain_bug),
    path("refused-value", refused_value),
    path("admin/", admin.site.urls),
    path("", include("medvault.ops.urls")),
]

handler500 = "medvault.ops.views.server_error"
