"""The load generator's page views against a live MedVault: a login that did not succeed must be
reported as the failure, and must not leave the client believing it is logged in.

The failover test relies on this: a login POST cut off by the killed app server (nginx does not
retry a POST) used to mark the client logged in, so its page views seconds later failed as 302s
to the login page and were counted as failures long after the kill.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medvault.accounts.models import User

from .loadgen import Client, Run

PASSWORD = "Corr3ct-Horse-Battery"


def _client(url: str, password: str) -> Client:
    template = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    run = Run(url=url, token="unused", password=password, templates=[template], clients=1,
              seconds=1)
    return Client(run, 0, "1")


@pytest.mark.slow
def test_failed_login_is_the_failure_and_is_retried(live_server, transactional_db) -> None:
    User.objects.create_user(username="admin", password=PASSWORD, role="administrator",
                             status="approved", full_name="Admin", email="admin@example.org")

    refused = _client(live_server.url, "not-the-password")
    for _ in range(2):
        status, ok, detail = refused.page()
        assert not ok and detail.startswith("login:"), (status, detail)
        assert not refused.logged_in

    client = _client(live_server.url, PASSWORD)
    results = [client.page() for _ in range(12)]
    assert client.logged_in
    assert all(ok for _, ok, _ in results), results
    # The session is real: the signed-in study list answers without a redirect to the login.
    studies = client.pages.get(f"{live_server.url}/studies/", allow_redirects=False)
    assert studies.status_code == 200
