"""/healthz and the clear answers for infrastructure failures (503 database, 507 storage)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client


@pytest.mark.django_db
def test_healthz_is_ok_without_login_and_reveals_nothing(client: Client, blob_dir) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "blob_store": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_blob_store_is_unusable(client: Client, settings, tmp_path) -> None:
    not_a_dir = tmp_path / "blobs-is-a-file"
    not_a_dir.write_bytes(b"")
    settings.MEDVAULT_BLOB_DIR = not_a_dir
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "blob_store": "unavailable"}
    assert response["Retry-After"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_fails(client: Client, blob_dir) -> None:
    def broken_cursor(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    with mock.patch("medvault.ops.health.connection.cursor", broken_cursor):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "unavailable" and body["status"] == "unavailable"
    assert "Connection refused" not in response.content.decode()


@pytest.mark.django_db
def test_healthz_accepts_only_safe_methods(client: Client, blob_dir) -> None:
    assert client.post("/healthz").status_code == 405


@pytest.fixture
def failing_client(settings) -> Client:
    settings.ROOT_URLCONF = "ops.urls_failing"
    settings.DEBUG = False
    return Client(raise_request_exception=False)


@pytest.mark.django_db
def test_database_outage_is_a_503_with_a_clear_message(failing_client: Client) -> None:
    response = failing_client.get("/db-down", HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response.json()["error"].startswith("database unavailable")
    assert response["Retry-After"] == "10"
    assert "5432" not in response.content.decode()


@pytest.mark.django_db
def test_database_outage_page_is_html_for_browsers(failing_client: Client) -> None:
    response = failing_client.get("/db-down", HTTP_ACCEPT="text/html")
    assert response.status_code == 503
    assert b"database unavailable" in response.content
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_full_disk_is_a_507_storage_full(failing_client: Client) -> None:
    response = failing_client.get("/disk-full")
    assert response.status_code == 507
    assert response.json()["error"].startswith("storage full")


@pytest.mark.django_db
def test_other_errors_stay_500_without_details(failing_client: Client) -> None:
    response = failing_client.get("/bug")
    assert response.status_code == 500
    text = response.content.decode()
    assert "Traceback" not in text and "/srv/x" not in text
    assert response.json()["error"].startswith("internal error")


@pytest.mark.django_db
def test_a_value_the_database_refuses_is_a_400(failing_client: Client) -> None:
    response = failing_client.get("/refused-value")
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request")
