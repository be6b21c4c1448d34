"""Login, lockout, registration, password reset, tokens, user administration, audit page, CSRF."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core import mail
from django.test import Client
from mvfixtures import PASSWORD, make_study, make_user, stored_sample
from urlenum import all_paths

from medvault.accounts.models import AccountStatus, ApiToken, AuditRecord, LoginAttempt, User


def login_post(client, username, password=PASSWORD, addr="10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=addr)


@pytest.mark.django_db
def test_register_then_pending_cannot_login_then_approved_can(client):
    page = client.get("/accounts/register/").content.decode()
    assert all(f'name="{f}"' in page for f in ("username", "full_name", "email", "role", "institution"))
    assert 'value="administrator"' not in page  # nobody registers as administrator
    r = client.post("/accounts/register/", {
        "username": "newdoc", "full_name": "New Doctor", "email": "new@example.org", "role": "clinician",
        "institution": "General Hospital", "password1": PASSWORD, "password2": PASSWORD,
    })
    assert r.status_code == 200 and "pending" in r.content.decode()
    user = User.objects.get(username="newdoc")
    assert (user.status, user.role, user.institution) == ("pending", "clinician", "General Hospital")
    r = login_post(client, "newdoc")
    assert "waiting for approval" in r.content.decode()
    assert "_auth_user_id" not in client.session
    user.status = AccountStatus.REJECTED
    user.save()
    assert "not approved" in login_post(client, "newdoc").content.decode()
    user.status = AccountStatus.APPROVED
    user.save()
    r = login_post(client, "newdoc")
    assert r.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_status_reason_is_only_told_to_who_knows_the_password(client):
    make_user("waiting", "clinician", status="pending")
    body = login_post(client, "waiting", "wrong-password").content.decode()
    assert "waiting for approval" not in body and "not correct" in body


@pytest.mark.django_db
def test_registration_uses_password_validators(client):
    r = client.post("/accounts/register/", {
        "username": "weak", "full_name": "W", "email": "w@example.org", "role": "researcher",
        "institution": "U", "password1": "12345678", "password2": "12345678",
    })
    assert not User.objects.filter(username="weak").exists()
    assert "too short" in r.content.decode() or "too common" in r.content.decode()


@pytest.mark.django_db
def test_lockout_after_five_failures_per_account(client, clinician_a):
    for i in range(5):
        login_post(client, "cla", "bad", addr=f"10.0.0.{i}")
    # Even the right password is refused now, from any address.
    r = login_post(client, "cla", addr="10.9.9.9")
    assert "Too many failed login attempts" in r.content.decode()
    assert "_auth_user_id" not in client.session
    # 15 minutes later it works again.
    from datetime import timedelta

    from django.utils import timezone

    LoginAttempt.objects.update(created_at=timezone.now() - timedelta(minutes=16))
    assert login_post(client, "cla", addr="10.9.9.9").status_code == 302


@pytest.mark.django_db
def test_lockout_after_five_failures_per_address(client, clinician_a):
    for i in range(5):
        login_post(client, f"nobody{i}", "bad", addr="10.7.7.7")
    assert "Too many failed" in login_post(client, "cla", addr="10.7.7.7").content.decode()
    assert login_post(client, "cla", addr="10.7.7.8").status_code == 302
    assert AuditRecord.objects.filter(action="login", outcome="denied").count() >= 6


@pytest.mark.django_db
def test_password_reset_by_email(client, clinician_a):
    r = client.post("/accounts/password/reset/", {"email": clinician_a.email})
    assert r.status_code == 302 and len(mail.outbox) == 1
    link = re.search(r"http://[^/]+(/accounts/password/reset/\S+/)", mail.outbox[0].body).group(1)
    r = client.get(link, follow=True)
    assert "Choose a new password" in r.content.decode()
    new = "An0ther-Long-Passphrase"
    r = client.post(r.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert r.status_code == 302
    clinician_a.refresh_from_db()
    assert clinician_a.check_password(new)


@pytest.mark.django_db
def test_password_change(client, clinician_a):
    client.force_login(clinician_a)
    new = "Brand-New-Passphrase-9"
    r = client.post(
        "/accounts/password/change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert r.status_code == 302
    clinician_a.refresh_from_db()
    assert clinician_a.check_password(new)


@pytest.mark.django_db
def test_token_page_creates_shows_once_and_revokes(client, clinician_a, study_a):
    client.force_login(clinician_a)
    page = client.post("/accounts/tokens/", {"name": "laptop"}).content.decode()
    key = re.search(r"(mv_[A-Za-z0-9_\-]+)", page).group(1)
    assert key not in client.get("/accounts/tokens/").content.decode()
    api = Client()
    # Token and Basic auth against a real API endpoint.
    assert api.get("/api/v1/analyses", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert api.get("/api/v1/analyses").status_code == 401
    token = ApiToken.objects.get(user=clinician_a)
    client.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert api.get("/api/v1/analyses", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    # Someone else's token cannot be revoked (404).
    other = make_user("othr", "clinician")
    theirs = ApiToken.objects.create(user=other, key_hash="f" * 64, prefix="mv_x")
    assert client.post(f"/accounts/tokens/{theirs.pk}/revoke/").status_code == 404


@pytest.mark.django_db
def test_admin_approves_rejects_deactivates_and_manages_groups(client, admin_user, group_a):
    pending = make_user("pend", "clinician", status="pending")
    client.force_login(admin_user)
    page = client.get("/accounts/users/").content.decode()
    assert "pend" in page and "waiting for approval" in page
    client.post(f"/accounts/users/{pending.pk}/", {"action": "approve"})
    pending.refresh_from_db()
    assert pending.status == "approved"
    client.post(f"/accounts/users/{pending.pk}/", {"action": "add_group", "group": group_a.pk})
    assert list(pending.groups.all()) == [group_a]
    client.post(f"/accounts/users/{pending.pk}/", {"action": "remove_group", "group": group_a.pk})
    assert not pending.groups.exists()
    client.post(f"/accounts/users/{pending.pk}/", {"action": "role", "role": "researcher"})
    pending.refresh_from_db()
    assert pending.role == "researcher"
    client.post(f"/accounts/users/{pending.pk}/", {"action": "deactivate"})
    pending.refresh_from_db()
    assert not pending.is_active
    assert "deactivated" in login_post(Client(), "pend").content.decode()
    client.post("/accounts/groups/new/", {"name": "Cardiology"})
    assert "Cardiology" in client.get("/accounts/users/").content.decode()
    assert AuditRecord.objects.filter(action="user-admin", username="boss").count() == 6


@pytest.mark.django_db
def test_a_deactivated_users_session_stops_working(clinician_a):
    client = Client()
    client.force_login(clinician_a)
    assert client.get("/studies/").status_code == 200
    clinician_a.is_active = False
    clinician_a.save()
    assert client.get("/studies/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/users/", "/accounts/audit/", "/accounts/audit.csv"])
def test_admin_pages_refuse_other_roles(path, clinician_a, technician_a, researcher_a):
    for user in (clinician_a, technician_a, researcher_a):
        client = Client()
        client.force_login(user)
        assert client.get(path).status_code == 403
    assert AuditRecord.objects.filter(outcome="denied", action="admin").count() == 3


@pytest.mark.django_db
def test_audit_page_filters_and_csv(client, admin_user, clinician_a, study_a):
    from medvault.accounts.audit import audit_record

    audit_record(user=clinician_a, action="view", patient_id="PAT-A", study_uid=study_a.study_instance_uid)
    audit_record(user=clinician_a, action="download", patient_id="PAT-Z")
    audit_record(user=admin_user, action="view", patient_id="PAT-A")
    client.force_login(admin_user)
    page = client.get("/accounts/audit/", {"user": "cla", "patient": "PAT-A"}).content.decode()
    assert study_a.study_instance_uid in page and "PAT-Z" not in page
    assert (
        "No records match"
        in client.get("/accounts/audit/", {"date_from": "2000-01-01", "date_to": "2000-01-02"}).content.decode()
    )
    response = client.get("/accounts/audit.csv", {"user": "cla"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["time_utc", "user", "action", "outcome"]
    assert sorted(r[2] for r in rows[1:]) == ["download", "view"]
    assert AuditRecord.objects.filter(action="export", username="boss").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["administrator", "clinician", "technician", "researcher"])
def test_pages_per_role(role, group_a, blob_dir):
    user = make_user(f"u_{role[:5]}", role, [group_a])
    own = make_study(group_a, uploaded_by=user, patient_name="Own^Upload")
    others = make_study(group_a, patient_name="Group^Colleague")
    client = Client()
    client.force_login(user)
    expected = {
        # page: allowed?
        "/": True, "/studies/": True, "/history/": True,
        "/upload/": role in ("administrator", "clinician", "technician"),
        "/accounts/users/": role == "administrator", "/accounts/audit/": role == "administrator",
    }
    for path, allowed in expected.items():
        assert (client.get(path).status_code == 200) == allowed, (role, path)
    sees_group = role in ("administrator", "clinician", "researcher")
    # Researchers address studies by pseudonymous UIDs (PS3.15 Annex E); the originals name nothing.
    from medvault.web.uid_middleware import pseudonym_issue

    address = pseudonym_issue if role == "researcher" else str
    assert client.get(f"/studies/{address(others.study_instance_uid)}/").status_code == (200 if sees_group else 404)
    assert client.get(f"/studies/{address(own.study_instance_uid)}/").status_code == 200


@pytest.mark.django_db
def test_researcher_sees_no_identifying_data(researcher_a, group_a, blob_dir):
    instance = stored_sample(group_a)
    study = instance.series.study
    patient = study.patient
    client = Client()
    client.force_login(researcher_a)
    secrets = [patient.patient_id, patient.patient_name.split("^")[0], study.accession_number]
    if patient.patient_birth_date:
        secrets.append(patient.patient_birth_date.isoformat())
        secrets.append(patient.patient_birth_date.strftime("%Y%m%d"))
    secrets = [s for s in secrets if s]
    from medvault.web.uid_middleware import pseudonym_issue

    st, sop = pseudonym_issue(study.study_instance_uid), pseudonym_issue(instance.sop_instance_uid)
    secrets += [study.study_instance_uid, instance.sop_instance_uid]
    pages = ["/", "/studies/", f"/studies/{st}/", f"/viewer/{st}/", f"/frames/{sop}/info", "/history/"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        for secret in secrets:
            assert secret not in body, (path, secret)
    # Search by identity is not offered to researchers and does not narrow anything.
    assert 'name="patient_name"' not in client.get("/studies/").content.decode()
    assert client.get(f"/instances/{sop}/download").status_code == 403


def _csrf_token(client: Client, path: str) -> str:
    client.get(path)
    return client.cookies["csrftoken"].value


@pytest.mark.django_db
def test_csrf_is_enforced_on_every_page_that_takes_a_post(admin_user, study_a):
    """Every non-API URL refuses a POST without a CSRF token (403), logged in or not."""
    for logged_in in (False, True):
        client = Client(enforce_csrf_checks=True)
        if logged_in:
            client.force_login(admin_user)
        for path in all_paths(study_a):
            if path.startswith(("/api/", "/dicomweb/")):
                continue
            response = client.post(path, {"username": "x", "password": "y"})
            assert response.status_code == 403, (path, logged_in, response.status_code)


@pytest.mark.django_db
def test_session_api_posts_need_csrf_but_token_posts_do_not(clinician_a):
    from medvault.accounts.tokens import token_create

    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician_a)
    r = client.post("/api/v1/analyses", data="{}", content_type="application/json")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    _, key = token_create(user=clinician_a)
    r = Client(enforce_csrf_checks=True).post("/api/v1/analyses", data="{}", content_type="application/json",
                                              HTTP_AUTHORIZATION=f"Token {key}")
    assert r.status_code == 400  # past authentication and CSRF: the body itself is incomplete


@pytest.mark.django_db
def test_login_with_csrf_token_works(clinician_a):
    client = Client(enforce_csrf_checks=True)
    token = _csrf_token(client, "/accounts/login/")
    r = client.post("/accounts/login/", {"username": "cla", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert r.status_code == 302


@pytest.mark.django_db
def test_django_admin_is_a_second_door_and_audit_is_read_only(client, admin_user, clinician_a):
    from medvault.accounts.audit import audit_record

    admin_user.is_staff = True
    admin_user.is_superuser = True
    admin_user.save()
    pending = make_user("viaadmin", "clinician", status="pending")
    client.force_login(admin_user)
    r = client.post("/admin/accounts/user/", {"action": "approve", "_selected_action": [pending.pk]})
    assert r.status_code == 302
    pending.refresh_from_db()
    assert pending.status == "approved"
    audit_record(user=clinician_a, action="view")
    record = AuditRecord.objects.filter(username="cla").get()
    page = client.get(f"/admin/accounts/auditrecord/{record.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(f"/admin/accounts/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()


@pytest.mark.django_db
def test_lockout_counts_the_real_client_behind_the_proxy(client, clinician_a, settings):
    """Behind nginx every request comes from 127.0.0.1; X-Forwarded-For names the client."""
    settings.MEDVAULT_TRUSTED_PROXIES = ["127.0.0.1", "::1"]  # as scripts/cluster.sh sets it
    for i in range(5):
        client.post("/accounts/login/", {"username": f"x{i}", "password": "bad"},
                    REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    locked = client.post("/accounts/login/", {"username": "cla", "password": PASSWORD},
                         REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert "Too many failed" in locked.content.decode()
    other = client.post("/accounts/login/", {"username": "cla", "password": PASSWORD},
                        REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert other.status_code == 302
    # A client that is not a trusted proxy cannot choose its address with the header.
    assert AuditRecord.objects.filter(remote_addr="203.0.113.9", outcome="denied").count() >= 5
    from django.test import RequestFactory

    from medvault.accounts.audit import client_address

    spoof = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.1.1.1")
    assert client_address(spoof) == "192.0.2.1"
